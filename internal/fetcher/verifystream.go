package fetcher

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
)

// verifyingReader hashes a cached module as the module server sends it and
// withholds the last bytes unless the whole file matches its digest, so
// that a file altered in place (bit rot, an edit that kept size and mtime)
// is never delivered whole under a digest it does not have. Hashing while
// sending reads the file once; hashing before sending would read it twice
// for every download.
type verifyingReader struct {
	f        *Fetcher
	file     *os.File
	info     os.FileInfo
	want     string
	size     int64
	pos      int64
	h        hash.Hash
	broken   bool  // a seek left the hash unable to cover the body
	corrupt  error // set once the file was found not to match
	verified bool  // the whole file was read and matched
}

func (f *Fetcher) newVerifyingReader(want string, file *os.File) (*verifyingReader, int) {
	info, err := file.Stat()
	if err != nil {
		f.log.Error("in-use module unreadable", "sha256", want, "error", err)
		return nil, http.StatusServiceUnavailable
	}
	v := &verifyingReader{f: f, file: file, info: info, want: want, size: info.Size(), h: sha256.New()}
	if v.size == 0 {
		// An empty body is sent without a Read: check it now.
		if got := hex.EncodeToString(v.h.Sum(nil)); got != want {
			v.corrupt = fmt.Errorf("%w: %s is empty, which hashes to sha256:%s", errCorrupt, file.Name(), got)
			f.lost(want, info, checkServe, v.corrupt)
			return nil, http.StatusServiceUnavailable
		}
		v.verified = true
	}
	return v, http.StatusOK
}

// Seek passes through; the hash restarts at offset 0 (http.ServeContent
// seeks to the end and back to learn the size before sending). The end is
// the size the file had when opened, so that a file that shrinks meanwhile
// cannot be sent whole without reaching the check.
func (v *verifyingReader) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekEnd {
		offset, whence = v.size+offset, io.SeekStart
	}
	n, err := v.file.Seek(offset, whence)
	if err == nil {
		v.pos, v.broken = n, n != 0
		v.h.Reset()
	}
	return n, err
}

// Read returns the file's bytes, except that the read reaching the end of
// the file returns nothing but an error when the file does not hash to its
// digest.
func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.corrupt != nil {
		return 0, v.corrupt
	}
	n, err := v.file.Read(p)
	if v.broken {
		if n > 0 {
			return 0, errors.New("module read from an offset cannot be verified")
		}
		return n, err
	}
	v.h.Write(p[:n])
	v.pos += int64(n)
	if v.pos < v.size {
		return n, err
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want || v.pos > v.size {
		v.corrupt = fmt.Errorf("%w: %s hashes to sha256:%s as it was sent", errCorrupt, v.file.Name(), got)
		v.f.lost(v.want, v.info, checkServe, v.corrupt)
		return 0, v.corrupt
	}
	v.verified = true
	v.f.cache.markVerified(v.want, v.info)
	return n, err
}

var _ io.ReadSeeker = (*verifyingReader)(nil)
