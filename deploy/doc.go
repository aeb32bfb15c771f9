// Package deploy holds no code: its tests check what is shipped beside the
// binary — the container image (Dockerfile, scripts/image.sh), the
// Kubernetes manifests (kubernetes/) and the systemd unit (systemd/) —
// so that `go test ./...` covers them.
package deploy
