package workers

import "errors"

// errUnknownKind fails an attempt whose kind this process does not run.
var errUnknownKind = errors.New("kind not registered on this worker")

// IsPermanent reports whether err contains a *PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// PermanentError marks an error that retrying the job cannot fix (bad input,
// unsupported format, input over a limit). Workers should fail such a job
// at once instead of scheduling a retry. Detect it with errors.As.
type PermanentError struct{ Err error }

// Error returns the message of the wrapped error.
func (e *PermanentError) Error() string {
	if e == nil || e.Err == nil {
		return "permanent error"
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error, so errors.Is and errors.As see through it.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err in a *PermanentError. It returns nil for a nil err and
// returns err unchanged when it already contains a *PermanentError.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	var pe *PermanentError
	if errors.As(err, &pe) {
		return err
	}
	return &PermanentError{Err: err}
}
