"""Value hashers for numpy arrays and scalars and for pandas frames, series and indexes.

:mod:`etherealfabric.hashing._builtins` registers these handlers the first time a value is hashed
while numpy (or pandas) is already imported; neither module imports numpy or pandas before then.
The encodings, part of every digest, are::

    numpy.ndarray dtype shape <length> <raw C-order buffer>   (object arrays: each element)
    numpy.masked <data array> <mask array> | numpy.scalar dtype bytes | numpy.dtype text
    pandas.DataFrame columns dtypes index <row hashes>
    pandas.Series name dtype index <row hashes> | pandas.Index names dtype <hashes>

Row hashes come from ``pandas.util.hash_pandas_object`` (an array of uint64).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..errors import HashingError

if TYPE_CHECKING:
    from ._digest import Hasher
    from ._encoder import Encoder, Handler

__all__ = ["numpy_handlers", "pandas_handlers"]

_ARRAY_CHUNK = 1 << 20  # non-contiguous arrays are copied this much at a time


def numpy_handlers(np: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported numpy module ``np``, by type."""
    handlers: dict[type[Any], Handler] = {np.ndarray: _enc_ndarray, np.dtype: _enc_dtype}
    for scalar in (np.generic, np.str_, np.bytes_):  # str_/bytes_ would dispatch as str/bytes
        handlers[scalar] = _enc_numpy_scalar
    return handlers


def pandas_handlers(pd: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported pandas module ``pd``, by type."""
    return {pd.DataFrame: _enc_dataframe, pd.Series: _enc_series, pd.Index: _enc_index}


# -- numpy -------------------------------------------------------------------------------------


def _dtype_text(dtype: Any) -> str:
    """``dtype.str`` ('<f8'), or the full description for structured dtypes."""
    return dtype.str if dtype.fields is None else str(dtype.descr)


def _enc_dtype(dtype: Any, encoder: Encoder) -> None:
    encoder.tag("numpy.dtype")
    encoder.text(_dtype_text(dtype))


def _enc_ndarray(array: Any, encoder: Encoder) -> None:
    np = sys.modules["numpy"]
    masked = sys.modules.get("numpy.ma")
    if masked is not None and isinstance(array, masked.MaskedArray):
        encoder.tag("numpy.masked")
        _enc_ndarray(np.asarray(array.data), encoder)
        _enc_ndarray(masked.getmaskarray(array), encoder)
        return
    encoder.tag("numpy.ndarray")
    encoder.text(_dtype_text(array.dtype))
    encoder.sequence("shape", [int(n) for n in array.shape])
    if array.dtype.hasobject:
        for item in array.flat:  # C order, whatever the memory layout
            encoder.value(item)
        return
    encoder.length(array.nbytes)
    _feed_array(encoder.flush(), array, np)


def _feed_array(hasher: Hasher, array: Any, np: Any) -> None:
    """Feed the array's bytes in C order; copy at most one chunk at a time."""
    if array.flags.c_contiguous:
        hasher.update(memoryview(array.reshape(-1).view(np.uint8)))
    elif array.nbytes <= _ARRAY_CHUNK or array.ndim == 0:
        hasher.update(memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8)))
    else:
        row = array.nbytes // array.shape[0]
        if array.ndim > 1 and row > _ARRAY_CHUNK:
            for i in range(array.shape[0]):
                _feed_array(hasher, array[i], np)
            return
        step = max(1, _ARRAY_CHUNK // max(row, 1))
        for start in range(0, array.shape[0], step):
            _feed_array(hasher, array[start : start + step], np)


def _enc_numpy_scalar(value: Any, encoder: Encoder) -> None:
    encoder.tag("numpy.scalar")
    encoder.text(_dtype_text(value.dtype))
    if value.dtype.hasobject:
        encoder.value(value.item())
    else:
        encoder.frame(value.tobytes())


# -- pandas ------------------------------------------------------------------------------------


def _pandas_hashes(obj: Any, **options: Any) -> Any:
    import pandas as pd

    try:
        return pd.util.hash_pandas_object(obj, **options).to_numpy()
    except TypeError as exc:
        raise HashingError(
            f"pandas cannot hash this {type(obj).__name__} ({exc}); convert unhashable cells "
            "(lists, dicts) to strings or tuples, or register a hasher"
        ) from exc


def _enc_dataframe(frame: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.DataFrame")
    encoder.value(list(frame.columns))
    encoder.value([str(t) for t in frame.dtypes])
    _enc_index(frame.index, encoder)
    encoder.value(_pandas_hashes(frame, index=False))


def _enc_series(series: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.Series")
    encoder.value(series.name)
    encoder.text(str(series.dtype))
    _enc_index(series.index, encoder)
    encoder.value(_pandas_hashes(series, index=False))


def _enc_index(index: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.Index")
    encoder.value(list(index.names))
    encoder.text(str(index.dtype))
    encoder.value(_pandas_hashes(index))
