package sigcrypto

import "github.com/tollgate/tollgate/internal/keyfile"

// ParsePrivateKey parses a key file's contents (internal/keyfile, the one
// key parser) into this implementation's key object, as the daemon does at
// load.
func (i *Impl) ParsePrivateKey(data []byte) (Signer, error) {
	k, err := keyfile.Parse(data)
	if err != nil {
		return nil, err
	}
	return i.NewSigner(k)
}

// ParsePrivateKey is Impl.ParsePrivateKey of the Default implementation.
func ParsePrivateKey(data []byte) (Signer, error) { return defaultImpl().ParsePrivateKey(data) }
