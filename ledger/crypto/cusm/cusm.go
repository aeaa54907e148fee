// Package main is cusm, the C-callable SM2 of github.com/emmansun/gmsm that the
// Python backend ledger/crypto/gmsm.py loads with ctypes. Built with
// `go build -buildmode=c-shared` by `cityunion crypto build`.
//
// Keys and signatures are raw bytes as in ledger/crypto/sm2.py: private key 32
// bytes d, public key 64 bytes x||y, signature 64 bytes r||s. The signed digest
// is e = SM3(Z_A || M) with Z_A over the given user id, including an empty one
// (gmsm's own *WithSM2 helpers would substitute the default id for it).
package main

/*
#include <stddef.h>
*/
import "C"

import (
	"crypto/ecdsa"
	"crypto/rand"
	"math/big"
	"unsafe"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

func view(p *C.uchar, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

func publicKey(pub []byte) *ecdsa.PublicKey {
	return &ecdsa.PublicKey{Curve: sm2.P256(),
		X: new(big.Int).SetBytes(pub[:32]), Y: new(big.Int).SetBytes(pub[32:])}
}

// digest is e = SM3(Z_A || msg); nil if the user id is too long (8192+ bytes).
func digest(pub *ecdsa.PublicKey, uid, msg []byte) []byte {
	za, err := sm2.CalculateZA(pub, uid)
	if err != nil {
		return nil
	}
	h := sm3.New()
	h.Write(za)
	h.Write(msg)
	return h.Sum(nil)
}

// cusm_public writes the public key of the private key priv (32 bytes) to out
// (64 bytes). Returns 1, or 0 if d is not in [1, n-1].
//
//export cusm_public
func cusm_public(priv *C.uchar, out *C.uchar) (ok C.int) {
	defer func() {
		if recover() != nil {
			ok = 0
		}
	}()
	d := new(big.Int).SetBytes(view(priv, 32))
	if d.Sign() <= 0 || d.Cmp(sm2.P256().Params().N) >= 0 {
		return 0
	}
	x, y := sm2.P256().ScalarBaseMult(view(priv, 32))
	dst := view(out, 64)
	x.FillBytes(dst[:32])
	y.FillBytes(dst[32:])
	return 1
}

// cusm_sign writes priv's SM2 signature r||s of msg under user id uid to out
// (64 bytes). The caller checks d in [1, n-2]. Returns 1, or 0 on failure.
//
//export cusm_sign
func cusm_sign(priv *C.uchar, uid *C.uchar, uidLen C.size_t,
	msg *C.uchar, msgLen C.size_t, out *C.uchar) (ok C.int) {
	defer func() {
		if recover() != nil {
			ok = 0
		}
	}()
	key := new(ecdsa.PrivateKey)
	key.D = new(big.Int).SetBytes(view(priv, 32))
	key.Curve = sm2.P256()
	key.X, key.Y = key.Curve.ScalarBaseMult(view(priv, 32))
	e := digest(&key.PublicKey, view(uid, uidLen), view(msg, msgLen))
	if e == nil {
		return 0
	}
	r, s, err := sm2.Sign(rand.Reader, key, e)
	if err != nil {
		return 0
	}
	dst := view(out, 64)
	r.FillBytes(dst[:32])
	s.FillBytes(dst[32:])
	return 1
}

// cusm_verify reports whether sig (64 bytes r||s) is pub's (64 bytes x||y) SM2
// signature of msg under user id uid: 1 if so, 0 if not or if any input is
// malformed (a point off the curve, r or s zero or not below n).
//
//export cusm_verify
func cusm_verify(pub *C.uchar, uid *C.uchar, uidLen C.size_t,
	msg *C.uchar, msgLen C.size_t, sig *C.uchar) (ok C.int) {
	defer func() {
		if recover() != nil {
			ok = 0
		}
	}()
	key := publicKey(view(pub, 64))
	e := digest(key, view(uid, uidLen), view(msg, msgLen))
	if e == nil {
		return 0
	}
	rs := view(sig, 64)
	r, s := new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])
	if sm2.Verify(key, e, r, s) {
		return 1
	}
	return 0
}

func main() {}
