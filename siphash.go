package main

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
)

// randomKey returns a new random SipHash key; it is kept in memory only.
func randomKey() (k0, k1 uint64) {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		panic("no randomness for a hash key: " + err.Error())
	}
	return binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
}

// sipState is the state of a SipHash-2-4 computation.
type sipState struct {
	v0, v1, v2, v3 uint64
}

// newSip starts SipHash-2-4 (Aumasson and Bernstein) under the key (k0, k1).
func newSip(k0, k1 uint64) sipState {
	return sipState{
		k0 ^ 0x736f6d6570736575,
		k1 ^ 0x646f72616e646f6d,
		k0 ^ 0x6c7967656e657261,
		k1 ^ 0x7465646279746573,
	}
}

// sipRound is one SipRound.
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// compress absorbs one 64-bit message word.
func (s *sipState) compress(m uint64) {
	v0, v1, v2, v3 := s.v0, s.v1, s.v2, s.v3^m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	s.v0, s.v1, s.v2, s.v3 = v0^m, v1, v2, v3
}

// finish absorbs the rest of the message, tail, and returns the hash; total is the length
// of the whole message in bytes.
func (s *sipState) finish(tail string, total int) uint64 {
	for len(tail) >= 8 {
		s.compress(uint64(tail[0]) | uint64(tail[1])<<8 | uint64(tail[2])<<16 | uint64(tail[3])<<24 |
			uint64(tail[4])<<32 | uint64(tail[5])<<40 | uint64(tail[6])<<48 | uint64(tail[7])<<56)
		tail = tail[8:]
	}
	m := uint64(total) << 56
	for i := range len(tail) {
		m |= uint64(tail[i]) << (8 * i)
	}
	s.compress(m)
	v0, v1, v2, v3 := s.v0, s.v1, s.v2^0xff, s.v3
	for range 4 {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

// sipHashPair is SipHash-2-4 of the 16 bytes of an address followed by a path, without
// copying them into one message.
func sipHashPair(k0, k1 uint64, addr [16]byte, path string) uint64 {
	s := newSip(k0, k1)
	s.compress(binary.LittleEndian.Uint64(addr[:8]))
	s.compress(binary.LittleEndian.Uint64(addr[8:]))
	return s.finish(path, 16+len(path))
}
