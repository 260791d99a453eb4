package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/controller/store"
)

// newSnapshotCmd is `ovcontroller snapshot save|restore`: backups of the embedded etcd
// (docs/operations.md, "Backing up etcd").
func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up the embedded etcd, and restore a backup so that agents notice and re-list",
	}
	cmd.AddCommand(newSnapshotSaveCmd(), newSnapshotRestoreCmd())
	return cmd
}

func newSnapshotSaveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Write a snapshot of the running embedded etcd to FILE (as root, through its client socket)",
		Long: `save writes a snapshot of the embedded etcd of a running controller to FILE (mode 0600: it holds
the cluster's secrets), the same file etcdctl snapshot save writes.`,
		Args:          cobra.ExactArgs(1),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			url, _ := cmd.Flags().GetString("etcd-client-url")
			if url == "" {
				dir, _ := cmd.Flags().GetString("data-dir")
				url = "unix://" + filepath.Join(dir, "etcd", "client.sock")
			}
			st, err := store.Open(store.Config{Endpoints: []string{url}, RequestTimeout: time.Minute})
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.Snapshot(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("%w (is the controller running, and are you root?)", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "snapshot of %s saved to %s (%d bytes)\n", url, args[0], n)
			return nil
		},
	}
	cmd.Flags().String("data-dir", "/var/lib/ov/controller", "the controller's data directory")
	cmd.Flags().String("etcd-client-url", "", "the embedded etcd's client socket (default unix://DATA_DIR/etcd/client.sock)")
	return cmd
}

func newSnapshotRestoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Make DATA_DIR/etcd a new embedded etcd holding the snapshot FILE, its revision bumped",
		Long: `restore makes DATA_DIR/etcd (which must not exist: stop the controller and move the old one away)
the data directory of a new embedded etcd holding the keys of FILE, a snapshot from
"ovcontroller snapshot save" or "etcdctl snapshot save". Like "etcdutl snapshot restore
--bump-revision N --mark-compacted" it raises the store's revision by --bump-revision and marks it
compacted: every agent's watch then finds its revision compacted, lists the endpoints afresh and
drops what the backup does not have. Start the controller afterwards.`,
		Args:          cobra.ExactArgs(1),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, _ := cmd.Flags().GetString("data-dir")
			bump, _ := cmd.Flags().GetInt64("bump-revision")
			compacted, _ := cmd.Flags().GetBool("mark-compacted")
			res, err := store.RestoreSnapshot(store.RestoreConfig{
				Snapshot: args[0], Dir: filepath.Join(dir, "etcd"), BumpRevision: bump, MarkCompacted: compacted,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s: revision %d, now %d (compacted: %v); start the controller\n",
				args[0], filepath.Join(dir, "etcd"), res.Revision, res.Bumped, compacted)
			return nil
		},
	}
	cmd.Flags().String("data-dir", "/var/lib/ov/controller", "the controller's data directory; the snapshot goes to DATA_DIR/etcd")
	cmd.Flags().Int64("bump-revision", store.DefaultBumpRevision, "added to the snapshot's revision: more than the changes made since the backup")
	cmd.Flags().Bool("mark-compacted", true, "mark the bumped revision compacted, so that every watcher re-lists")
	return cmd
}
