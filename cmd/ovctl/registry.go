package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/agent/client"
	"github.com/ovnet/ov/internal/errdefs"
)

// registryCmds are the registry commands: under `image` and, as docker has them, at the top.
func registryCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newPullCmd(g), newPushCmd(g), newTagCmd(g)}
}

// authFor returns the stored credentials for ref's registry (nil: anonymous).
func authFor(ref string) (*api.RegistryAuth, error) {
	cs, err := defaultCredStore()
	if err != nil {
		return nil, nil // no home: anonymous
	}
	return cs.get(registryOf(ref))
}

// pullImage has the agent pull ref with the stored credentials, drawing progress on w.
func pullImage(ctx context.Context, cl *client.Client, ref string, w io.Writer) (api.Image, error) {
	auth, err := authFor(ref)
	if err != nil {
		return api.Image{}, err
	}
	f, ok := w.(*os.File)
	p := newPullDisplay(w, ok && isTerminal(f))
	img, err := cl.PullImage(ctx, api.ImagePull{Ref: ref, Auth: auth}, p.event)
	p.finish()
	return img, err
}

// createPulling creates the container; when its image is missing it pulls it first, as `docker run`
// and `docker create` do ("Unable to find image 'x' locally", then the pull on stderr), and creates
// again. The happy path costs nothing more than the create.
func createPulling(ctx context.Context, cl *client.Client, req api.ContainerCreate) (api.Container, error) {
	c, err := cl.Create(ctx, req)
	if !errors.Is(err, errdefs.ErrNotFound) || filepath.IsAbs(req.Image) {
		return c, err
	}
	if _, ierr := cl.Image(ctx, req.Image); !errors.Is(ierr, errdefs.ErrNotFound) {
		return c, err // the image is there: something else is missing
	}
	fmt.Fprintf(os.Stderr, "Unable to find image '%s' locally\n", req.Image)
	if _, err := pullImage(ctx, cl, req.Image, os.Stderr); err != nil {
		return api.Container{}, err
	}
	return cl.Create(ctx, req)
}

func newPullCmd(g *globals) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull [-q] [REGISTRY/]NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry into the agent's store",
		Long: `Pull an image from an OCI distribution registry (the agent pulls; ovctl sends it the credentials
stored by ovctl login for that registry). Layers the agent has are not fetched again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out io.Writer = os.Stdout
			if quiet {
				out = nil
			}
			if _, err := pullImage(cmd.Context(), g.agent(), args[0], out); err != nil {
				return err
			}
			if quiet {
				fmt.Println(args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the reference")
	return cmd
}

func newPushCmd(g *globals) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "push [-q] REGISTRY/NAME[:TAG]",
		Short: "Push an image of the agent's store to its registry (tag it first with ovctl image tag)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			auth, err := authFor(args[0])
			if err != nil {
				return err
			}
			var out io.Writer = os.Stdout
			if quiet {
				out = nil
			}
			p := newPullDisplay(out, isTerminal(os.Stdout))
			d, err := g.agent().PushImage(cmd.Context(), api.ImagePull{Ref: args[0], Auth: auth}, p.event)
			p.finish()
			if err == nil && quiet {
				fmt.Println(d)
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the manifest digest")
	return cmd
}

func newTagCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Give an image another reference (e.g. REGISTRY/NAME:TAG before a push)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := g.agent().TagImage(cmd.Context(), args[0], args[1])
			return err
		},
	}
}

func newLoginCmd(g *globals) *cobra.Command {
	var user, password string
	var stdin bool
	cmd := &cobra.Command{
		Use:   "login [-u USER] [--password-stdin] REGISTRY",
		Short: "Log in to a registry: the agent checks the credentials, ovctl stores them (0600) for pull and push",
		Long: `Log in to a registry. The credentials are checked by the agent against the registry and stored in
docker's config.json format, mode 0600, in $DOCKER_CONFIG/config.json when DOCKER_CONFIG is set, else in
~/.ov/config.json. ovctl sends them to the agent with each pull or push of that registry.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := defaultCredStore()
			if err != nil {
				return err
			}
			auth, err := readLogin(args[0], user, password, stdin)
			if err != nil {
				return err
			}
			if err := g.agent().Login(cmd.Context(), auth); err != nil {
				return err
			}
			if err := cs.set(auth); err != nil {
				return fmt.Errorf("store the credentials: %w", err)
			}
			fmt.Println("Login Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().StringVarP(&password, "password", "p", "", "password (visible in ps and shell history: prefer --password-stdin)")
	cmd.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

// readLogin gathers the user and password: from flags, standard input, or prompts on a terminal.
func readLogin(registry, user, password string, stdin bool) (api.RegistryAuth, error) {
	in := bufio.NewReader(os.Stdin)
	tty := isTerminal(os.Stdin)
	if stdin {
		if user == "" {
			return api.RegistryAuth{}, fmt.Errorf("--password-stdin needs --username: %w", errdefs.ErrInvalidArgument)
		}
		b, err := io.ReadAll(io.LimitReader(in, 64<<10))
		if err != nil {
			return api.RegistryAuth{}, err
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if user == "" {
		if !tty {
			return api.RegistryAuth{}, fmt.Errorf("no user name: give -u USER (standard input is not a terminal): %w", errdefs.ErrInvalidArgument)
		}
		fmt.Fprint(os.Stderr, "Username: ")
		line, _ := in.ReadString('\n')
		user = strings.TrimSpace(line)
	}
	if password == "" && !stdin {
		if !tty {
			return api.RegistryAuth{}, fmt.Errorf("no password: give --password-stdin and pipe it in: %w", errdefs.ErrInvalidArgument)
		}
		fmt.Fprint(os.Stderr, "Password: ")
		p, err := readNoEcho(in)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return api.RegistryAuth{}, err
		}
		password = p
	}
	if user == "" || password == "" {
		return api.RegistryAuth{}, fmt.Errorf("login to %s: user name and password must not be empty: %w", registry, errdefs.ErrInvalidArgument)
	}
	return api.RegistryAuth{Username: user, Password: password, ServerAddress: registry}, nil
}

// readNoEcho reads a line from the terminal on stdin with echo off.
func readNoEcho(in *bufio.Reader) (string, error) {
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	line, err := in.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func newLogoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Forget the credentials stored for a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := defaultCredStore()
			if err != nil {
				return err
			}
			had, err := cs.remove(args[0])
			if err != nil {
				return err
			}
			if !had {
				fmt.Printf("Not logged in to %s\n", args[0])
				return nil
			}
			fmt.Printf("Removing login credentials for %s\n", args[0])
			return nil
		},
	}
}
