package daemon

import "errors"

// ErrEarlierInstall means the data dir shows an earlier install (the
// provisioning bundle, the admin password file or backups) but its
// database is missing or empty. Starting as a fresh install would issue
// new secrets and lock out every device flashed with the bundle, so the
// daemon refuses; the message says how to restore or re-initialise.
var ErrEarlierInstall = errors.New("the data dir holds an earlier install but its database is missing or empty")

// ErrBundleMissing means provisioning.json is gone while the store holds
// device credentials: new secrets would lock out every device flashed with
// the old bundle, so the daemon refuses; `loalangd reissue` is the
// deliberate way to issue new ones.
var ErrBundleMissing = errors.New("the provisioning bundle is missing")
