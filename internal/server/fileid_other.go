//go:build !linux

package server

import "io/fs"

// fileIDOf falls back to size and mtime where the inode is not at hand.
func fileIDOf(fi fs.FileInfo) fileID {
	return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
