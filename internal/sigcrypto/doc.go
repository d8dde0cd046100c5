// Package sigcrypto is the one signing and verification interface of the
// mail authentication features (ARC sealing and verifying, DKIM signing
// and verifying), with two implementations behind it.
//
// Why it exists: a sealed message costs two RSA-2048 signatures (three
// once DKIM signs too), and those signatures are most of a seal's CPU.
// Go's crypto/rsa takes about three times as long as OpenSSL 3 for the
// same signature on the development machine (1.05 ms against 0.33 ms,
// docs/performance.md), so the daemon signs through OpenSSL when it can.
//
// Which library: OpenSSL's libcrypto.so.3, loaded at run time (dlopen)
// through github.com/golang-fips/openssl/v2, the binding Microsoft's and
// Red Hat's Go toolchains use for their FIPS builds. It needs cgo but no
// OpenSSL headers or link-time library: a binary built with cgo starts on
// a machine without libcrypto.so.3 and uses the fallback.
//
// The fallback is Go's own crypto (crypto/rsa, crypto/ed25519), used when
// the binary is built without cgo (CGO_ENABLED=0, the container image) or
// when libcrypto.so.3 cannot be loaded. Default says which one this
// process uses and why; the daemon logs it once at start and exports it
// as the crypto label of tollgate_build_info.
//
// Keys are parsed once, when the configuration is loaded or reloaded, into
// the implementation's own key objects (an OpenSSL EVP_PKEY, or a Go key
// with its CRT values precomputed), never per message. Ed25519 always
// goes through crypto/ed25519, also in the OpenSSL implementation: OpenSSL
// 3 offers it, but measured through golang-fips/openssl v2.0.3 it is the
// slower one (sign 31 µs against Go's 18 µs, verify 88 µs against 45 µs;
// BenchmarkLibcryptoEd25519 and BenchmarkSign/go-ed25519). Verification
// keys come from DNS and are made into key objects by NewPublicKey; the
// callers cache them (arc.KeyCache, dkim's key cache).
//
// Signatures follow DKIM (RFC 6376 §3.3, RFC 8463 §3): rsa-sha256 is
// RSASSA-PKCS1-v1_5 over a SHA-256 digest, and ed25519-sha256 is PureEdDSA
// whose message is that 32-byte digest.
package sigcrypto
