"""Value hashers for numpy arrays, scalars and dtypes.

:mod:`etherealfabric.hashing._builtins` registers these handlers the first time a value is hashed
while numpy is already imported; neither module imports numpy before then. The encodings, part
of every digest, are::

    numpy.ndarray dtype shape <length> <raw C-order buffer>   (object arrays: each element;
                  structured arrays: "fields" then each field's buffer, padding left out;
                  StringDType arrays hold pointers, so they go element by element too)
    numpy.masked <data array> <mask array> <fill value> | numpy.scalar dtype bytes
    numpy.dtype text

Equal values give equal digests: the buffer is read in C order whatever the memory layout
(a Fortran-order or strided array hashes like its contiguous copy), and every NaN of a float
or complex buffer is hashed as the one canonical quiet NaN (``0x7ff8...``), whatever its sign
or payload. ``-0.0`` and ``0.0`` differ (they are different values to ``np.signbit`` and
``1/x``). Numeric buffers are never copied unless they hold a NaN or are not contiguous (then
one chunk at a time). pandas, pyarrow and polars are in :mod:`etherealfabric.hashing._frames`.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from ._loaded import loaded

if TYPE_CHECKING:
    from ._digest import Hasher
    from ._encoder import Encoder, Handler

__all__ = ["dtype_text", "feed_buffer", "feed_teed", "numpy_handlers", "teeable"]

_ARRAY_CHUNK = 1 << 20  # non-contiguous arrays are copied this much at a time
_PARALLEL = 8 << 20  # float buffers this big are hashed while another thread looks for NaNs
_TEE_KINDS = frozenset("biufcmMSU")  # dtypes whose canonical encoding is the raw buffer


def numpy_handlers(np: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported numpy module ``np``, by type."""
    handlers: dict[type[Any], Handler] = {np.ndarray: _enc_ndarray, np.dtype: _enc_dtype}
    for scalar in (np.generic, np.str_, np.bytes_):  # str_/bytes_ would dispatch as str/bytes
        handlers[scalar] = _enc_numpy_scalar
    return handlers


def dtype_text(dtype: Any) -> str:
    """``dtype.str`` ('<f8', with byte order and unit), or the full description if structured."""
    return str(dtype.str if dtype.fields is None else str(dtype.descr))


def _enc_dtype(dtype: Any, encoder: Encoder) -> None:
    encoder.tag("numpy.dtype")
    encoder.text(dtype_text(dtype))


def _enc_ndarray(array: Any, encoder: Encoder) -> None:
    np = sys.modules["numpy"]
    masked = loaded("numpy.ma")
    if masked is not None and isinstance(array, masked.MaskedArray):
        encoder.tag("numpy.masked")
        _enc_ndarray(np.asarray(array.data), encoder)
        _enc_ndarray(masked.getmaskarray(array), encoder)
        encoder.value(np.asarray(array.fill_value, dtype=array.dtype)[()])
        return
    _array_header(array, encoder)
    if array.dtype.hasobject:
        for item in array.flat:  # C order, whatever the memory layout
            encoder.value(item)
    elif array.dtype.names is not None:
        _feed_fields(encoder, array)
    else:
        feed_buffer(encoder, array)


def _array_header(array: Any, encoder: Encoder) -> None:
    encoder.tag("numpy.ndarray")
    encoder.text(dtype_text(array.dtype))
    encoder.sequence("shape", [int(n) for n in array.shape])


def teeable(array: Any) -> bool:
    """True if ``array`` is a plain ``numpy.ndarray`` whose canonical encoding ends with its
    raw C-order buffer (C-contiguous, no objects, no fields): :func:`feed_teed` applies."""
    np = loaded("numpy")
    return (
        np is not None
        and type(array) is np.ndarray
        and array.flags.c_contiguous
        and array.dtype.names is None
        and not array.dtype.hasobject
        and array.dtype.kind in _TEE_KINDS
    )


def feed_teed(encoder: Encoder, array: Any, tee: Hasher) -> None:
    """Encode a :func:`teeable` array exactly as its handler does, feeding its raw bytes to
    ``tee`` as well, in one pass: a chunk at a time, each read once from memory and hashed
    twice (and checked for NaNs) while in the CPU's cache. Used to get an array's value digest
    and the digest of its ``.npy`` bytes (``tee``, fed the header first) together."""
    np = sys.modules["numpy"]
    _array_header(array, encoder)
    encoder.length(array.nbytes)
    hasher = encoder.flush()
    flat = array.reshape(-1)
    floating = array.dtype.kind in "fc"
    step = max(1, _ARRAY_CHUNK // max(array.itemsize, 1))
    for start in range(0, flat.shape[0], step):
        chunk = flat[start : start + step]
        raw = _bytes_of(chunk, np)
        tee.update(raw)
        if floating and _has_nan(chunk, np):
            _feed_chunk(hasher, chunk, np, floating)  # NaNs made canonical (on a copy)
        else:
            hasher.update(raw)


def _feed_fields(encoder: Encoder, array: Any) -> None:
    """A structured array field by field, so padding bytes never count and NaNs are canonical."""
    encoder.tag("fields")
    for name in array.dtype.names:
        field = array[name]
        if field.dtype.names is not None:
            _feed_fields(encoder, field)
        else:
            feed_buffer(encoder, field)


def feed_buffer(encoder: Encoder, array: Any, *, framed: bool = True) -> None:
    """A frame of the array's bytes in C order, NaNs canonical; no copy when contiguous.

    ``framed=False`` leaves out the length prefix (the caller wrote one for several arrays).
    """
    np = sys.modules["numpy"]
    if framed:
        encoder.length(array.nbytes)
    floating = array.dtype.kind in "fc"
    if floating and array.flags.c_contiguous and array.nbytes >= _PARALLEL:
        # Hash on a copy of the hasher while this thread looks for NaNs (both release the
        # GIL); keep that hash when there is none, else feed the normalised bytes instead.
        hasher = encoder.flush()
        trial = hasher.copy()
        worker = threading.Thread(target=trial.update, args=(_bytes_of(array, np),))
        worker.start()
        found = _has_nan(array, np)
        worker.join()
        if not found:
            encoder.hasher = trial
            return
    _feed_array(encoder.flush(), array, np, floating)


def _bytes_of(array: Any, np: Any) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8))


def _has_nan(array: Any, np: Any) -> bool:
    if array.size == 0:
        return False
    if array.dtype.kind == "c":  # .real and .imag are views, whatever the strides
        return _has_nan(array.real, np) or _has_nan(array.imag, np)
    low = np.minimum.reduce(array, axis=None)  # NaN propagates; no temporary array
    return bool(low != low)


def _feed_chunk(hasher: Hasher, array: Any, np: Any, floating: bool) -> None:
    """Feed a small array (copied if it is not contiguous or holds a NaN)."""
    if floating and _has_nan(array, np):
        array = np.array(array, order="C")
        flat = array.reshape(-1)
        if array.dtype.kind == "c":
            flat = flat.view(flat.real.dtype)
        flat[np.isnan(flat)] = np.nan
    elif not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    hasher.update(_bytes_of(array, np))


def _feed_array(hasher: Hasher, array: Any, np: Any, floating: bool) -> None:
    """Feed the array's bytes in C order; copy at most one chunk at a time."""
    if array.nbytes <= _ARRAY_CHUNK or array.ndim == 0:
        _feed_chunk(hasher, array, np, floating)
        return
    if array.flags.c_contiguous and not floating:
        hasher.update(_bytes_of(array, np))
        return
    if array.ndim == 1 or array.flags.c_contiguous:
        flat = array.reshape(-1) if array.flags.c_contiguous else array
        step = max(1, _ARRAY_CHUNK // array.itemsize)
        for start in range(0, flat.shape[0], step):
            _feed_chunk(hasher, flat[start : start + step], np, floating)
        return
    row = array.nbytes // array.shape[0]
    if row > _ARRAY_CHUNK:
        for i in range(array.shape[0]):
            _feed_array(hasher, array[i], np, floating)
        return
    step = max(1, _ARRAY_CHUNK // max(row, 1))
    for start in range(0, array.shape[0], step):
        _feed_chunk(hasher, array[start : start + step], np, floating)


def _enc_numpy_scalar(value: Any, encoder: Encoder) -> None:
    encoder.tag("numpy.scalar")
    encoder.text(dtype_text(value.dtype))
    if value.dtype.hasobject:
        encoder.value(value.item())
    elif value.dtype.names is not None:
        _feed_fields(encoder, sys.modules["numpy"].asarray(value))
    elif value.dtype.kind in "fc":
        np = sys.modules["numpy"]
        encoder.length(value.dtype.itemsize)
        _feed_chunk(encoder.flush(), np.asarray(value), np, True)
    else:
        encoder.frame(value.tobytes())
