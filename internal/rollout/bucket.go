package rollout

import (
	"crypto/sha256"
	"encoding/binary"
)

// bucketTag separates this hash from any other hash of the same ids.
const bucketTag = "mxos-rollout-bucket-v1\x00"

// Bucket is the device's stable place in a rollout, in [0, 1). It is a wire
// format: devices recompute it, so it must never change. Exactly:
//
//	h      = SHA-256("mxos-rollout-bucket-v1" 0x00
//	                 u64be(len(deviceID)) deviceID
//	                 u64be(len(rolloutID)) rolloutID)
//	x      = big-endian uint64 of h[0:8]
//	bucket = (x >> 11) / 2^53
//
// Lengths are byte counts of the ids as given (no normalisation).
func Bucket(deviceID, rolloutID string) float64 {
	// Built in a stack buffer for usual id lengths: Bucket runs on every
	// update check.
	var buf [256]byte
	msg := append(buf[:0], bucketTag...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(len(deviceID)))
	msg = append(msg, deviceID...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(len(rolloutID)))
	msg = append(msg, rolloutID...)
	sum := sha256.Sum256(msg)
	x := binary.BigEndian.Uint64(sum[:8])
	// x/2^64 rounded to float64 could become 1.0 for x near 2^64; keeping
	// the top 53 bits is exact and stays below 1.
	return float64(x>>11) / (1 << 53)
}

// Eligible reports whether a device in bucket is admitted at fraction:
// bucket < fraction. At fraction 0 nobody is, at 1 everybody is, and a
// device admitted at some fraction stays admitted at every larger one.
func Eligible(bucket, fraction float64) bool { return bucket < fraction }
