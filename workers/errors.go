package workers

import "errors"

// errUnknownKind fails an attempt whose kind this process does not run.
var errUnknownKind = errors.New("kind not registered on this worker")

// IsPermanent reports whether err contains a *PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}
