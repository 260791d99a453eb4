package api

import (
	"fmt"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// RegistryAuth is the credentials a client gives the agent for one registry operation (the agent
// keeps none: like docker's X-Registry-Auth, they travel with each request).
type RegistryAuth struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// ServerAddress is the registry, "host[:port]".
	ServerAddress string `json:"serveraddress,omitempty"`
}

// ImagePull is the body of POST /v1/images/pull and /v1/images/push.
type ImagePull struct {
	// Ref is "[REGISTRY/]NAME[:TAG]" (pull also takes NAME@sha256:…).
	Ref  string        `json:"ref"`
	Auth *RegistryAuth `json:"auth,omitempty"`
}

// Validate reports what is wrong with p.
func (p ImagePull) Validate() error {
	if strings.TrimSpace(p.Ref) == "" {
		return fmt.Errorf("no image reference given; name one as [REGISTRY/]NAME[:TAG]: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// ImagePullEvent is one line of the JSON-lines answer of POST /v1/images/pull and /push: a step
// (docker's wording in Status, per layer when Layer is set), and last a line with Done and the
// image (pull) or digest (push), or with Error.
type ImagePullEvent struct {
	Layer   string `json:"layer,omitempty"`
	Status  string `json:"status,omitempty"`
	Current int64  `json:"current,omitempty"`
	Total   int64  `json:"total,omitempty"`
	Done    bool   `json:"done,omitempty"`
	Image   *Image `json:"image,omitempty"`
	Digest  string `json:"digest,omitempty"`
	Error   *Error `json:"error,omitempty"`
}

// ImageTag is the body of POST /v1/images/tag (docker tag SOURCE TARGET).
type ImageTag struct {
	Source string `json:"source"`
	Target string `json:"target"`
}
