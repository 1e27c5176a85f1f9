package modref

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"
)

// parseHTTP parses an http:// or https:// URL.
func parseHTTP(raw string) (Ref, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Ref{}, invalid(raw, "%s", urlReason(err))
	}
	if u.Host == "" {
		return Ref{}, invalid(raw, "no host")
	}
	u.Host = strings.ToLower(u.Host)
	u.Fragment, u.RawFragment = "", ""
	return Ref{Kind: KindHTTP, URL: u.String()}, nil
}

// parseFile parses file:///abs/path or file://localhost/abs/path.
func parseFile(raw string) (Ref, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return Ref{}, invalid(raw, "%s", urlReason(err))
	case u.Host != "" && !strings.EqualFold(u.Host, "localhost"):
		return Ref{}, invalid(raw, "names host %q; only local files can be read (file:///abs/path)", u.Host)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return Ref{}, invalid(raw, "has a query or fragment; write '?' and '#' in file names as %%3F and %%23")
	case !strings.HasPrefix(u.Path, "/"):
		return Ref{}, invalid(raw, "has no absolute path (file:///abs/path)")
	}
	return Ref{Kind: KindFile, Path: filepath.Clean(u.Path)}, nil
}

// parseRelativeFile parses file:path (no "//"): path is taken literally and
// resolved against dir when relative.
func parseRelativeFile(raw, path, dir string) (Ref, error) {
	if path == "" {
		return Ref{}, invalid(raw, "has no path")
	}
	if !filepath.IsAbs(path) {
		if dir == "" {
			return Ref{}, invalid(raw, "is relative and there is no directory to resolve it against; write file:///abs/path")
		}
		path = filepath.Join(dir, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Ref{}, invalid(raw, "%v", err)
	}
	return Ref{Kind: KindFile, Path: abs}, nil
}

func fileURL(path string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
}

// urlReason is what url.Parse objects to, without the URL it repeats.
func urlReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
