package controller

// SkipForgeryCheck turns off the check that rejects forged host tokens without asking etcd (attack
// tests show with it that they fail without the protection); it returns the function that turns it
// back on.
func SkipForgeryCheck() (restore func()) {
	checkForgery = false
	return func() { checkForgery = true }
}

// DisableWatchHub makes every watch stream open an etcd watch of its own, as before the shared watch
// (tests show with it that they fail without the hub); it returns the function that turns it back on.
func DisableWatchHub() (restore func()) {
	useHub = false
	return func() { useHub = true }
}
