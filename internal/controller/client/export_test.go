package client

// ResumeWithOldCursor makes watches resume as they did before revisions were tracked in full (from
// the revision of the last event delivered, skipping the rest of a half-delivered transaction), so
// that tests can show they catch it; it returns the function that restores the fix.
func ResumeWithOldCursor() (restore func()) {
	resumeWithOldCursor = true
	return func() { resumeWithOldCursor = false }
}
