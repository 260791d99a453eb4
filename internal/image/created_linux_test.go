package image

import (
	"context"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestCreatedFromConfig: an image's Created is the build time its config records (what `docker images`
// shows as CREATED), not the time it was loaded.
func TestCreatedFromConfig(t *testing.T) {
	s := newStore(t)
	base, _ := testImages(t)
	built := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: built}
	img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadFile(context.Background(), dockerArchive(t, map[string]v1.Image{"old:1": img}), nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(context.Background(), "old:1")
	if err != nil || !got.Created.Equal(built) {
		t.Errorf("Created %v (%v), want the config's %v", got.Created, err, built)
	}
}
