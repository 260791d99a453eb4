// Package membershiptest crafts memberlist messages as an attacker on the underlay would, for the
// tests that show gossip refuses them.
package membershiptest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
)

// deadMsg is memberlist's message type of a dead claim (part of its wire protocol).
const deadMsg = 5

// DeadClaim is a memberlist UDP packet claiming that node is dead, sent as if by from, with the given
// incarnation (a high one beats whatever the cluster knows). With key nil it is sent in clear, as a
// stranger without the cluster's key would; with a key it is encrypted and authenticated with it
// (AES-GCM, memberlist's encryption version 1, no label), as a member holding the key would.
func DeadClaim(node, from string, incarnation uint32, key []byte) []byte {
	msg := []byte{deadMsg, 0x83} // message type, then a msgpack map of 3 fields
	msg = appendStr(msg, "Incarnation")
	msg = append(msg, 0xce)
	msg = binary.BigEndian.AppendUint32(msg, incarnation)
	msg = appendStr(msg, "Node")
	msg = appendStr(msg, node)
	msg = appendStr(msg, "From")
	msg = appendStr(msg, from)
	if key == nil {
		return msg
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a test's key of the wrong size
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	out := make([]byte, 1+12, 1+12+len(msg)+16)
	out[0] = 1 // encryption version 1: AES-GCM, no padding
	_, _ = rand.Read(out[1:13])
	return gcm.Seal(out, out[1:13], msg, nil)
}

// appendStr appends a msgpack string.
func appendStr(b []byte, s string) []byte {
	if len(s) < 32 {
		b = append(b, 0xa0|byte(len(s)))
	} else {
		b = append(b, 0xd9, byte(len(s)))
	}
	return append(b, s...)
}
