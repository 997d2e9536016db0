package db

import "encoding/hex"

// PackHexID packs a 32-hex-digit lowercase id (a machine-id) into 16
// bytes, as the in-memory device and credential indexes key devices; ok
// is false for any other id.
func PackHexID(id string) (k [16]byte, ok bool) {
	if len(id) != 32 {
		return k, false
	}
	for i := 0; i < 32; i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return k, false
		}
	}
	_, err := hex.Decode(k[:], []byte(id))
	return k, err == nil
}
