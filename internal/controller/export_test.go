package controller

// SkipForgeryCheck turns off the check that rejects forged host tokens without asking etcd (attack
// tests show with it that they fail without the protection); it returns the function that turns it
// back on.
func SkipForgeryCheck() (restore func()) {
	checkForgery = false
	return func() { checkForgery = true }
}
