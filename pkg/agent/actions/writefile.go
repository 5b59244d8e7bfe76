package actions

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WriteFile mounts DEST_DISK (FS_TYPE), writes CONTENTS to DEST_PATH with
// MODE, UID and GID, creating missing parent directories with DIRMODE (owned
// by UID/GID), syncs and unmounts. Paths cannot escape the file system: ".."
// stops at its root and links leading out of it (absolute ones included) are
// refused.
func WriteFile(ctx context.Context, rt *Runtime, env Env, _ []string) (Then, error) {
	const name = "writefile"
	dev, err := env.Required(name, "DEST_DISK")
	if err != nil {
		return nil, err
	}
	fstype, err := env.Required(name, "FS_TYPE")
	if err != nil {
		return nil, err
	}
	dest, err := env.Required(name, "DEST_PATH")
	if err != nil {
		return nil, err
	}
	mode, err := env.Octal(name, "MODE", 0o644)
	if err != nil {
		return nil, err
	}
	dirMode, err := env.Octal(name, "DIRMODE", 0o755)
	if err != nil {
		return nil, err
	}
	uid, err := env.Int(name, "UID", 0)
	if err != nil {
		return nil, err
	}
	gid, err := env.Int(name, "GID", 0)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := mountDevice(name, rt.tempDir(), dev, fstype)
	if err != nil {
		return nil, err
	}
	werr := writeInto(m.dir, dest, []byte(env["CONTENTS"]), mode, dirMode, uid, gid)
	if err := errors.Join(werr, m.unmount()); err != nil {
		return nil, fmt.Errorf("%s: %s on %s: %w", name, dest, dev, err)
	}
	rt.logf("%s: wrote %d bytes to %s on %s (mode %04o, owner %d:%d)", name, len(env["CONTENTS"]), dest, dev, mode, uid, gid)
	return nil, nil
}

func writeInto(mnt, dest string, contents []byte, mode, dirMode os.FileMode, uid, gid int) error {
	root, err := os.OpenRoot(mnt)
	if err != nil {
		return err
	}
	defer root.Close()
	rel := strings.TrimPrefix(filepath.Clean("/"+dest), "/")
	if rel == "" {
		return errors.New("DEST_PATH names the root directory, not a file")
	}
	dir := ""
	for _, part := range strings.Split(filepath.Dir(rel), "/") {
		if part == "." {
			break
		}
		dir = filepath.Join(dir, part)
		err := root.Mkdir(dir, dirMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("creating directory /%s: %w", dir, err)
		}
		if err := root.Chmod(dir, dirMode); err != nil { // the umask applied to Mkdir
			return err
		}
		if err := root.Lchown(dir, uid, gid); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(contents)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
