"""The hashing layer: turns values, files and code into the digests cache keys are made of.

Every digest is xxh3-128 as 32 lowercase hex characters, and the same in every process (no
``id()``, no ``hash()``, no dict or set order). Changing what any module here writes changes
cache keys: ``tests/test_hashing.py`` pins golden digests.

Modules, lowest first; each imports only modules above it in this list, so there is no
import cycle (the value encoder and code fingerprints need each other: fingerprints hash
their constants with the builtin handlers, and the handler for functions and classes, which
needs fingerprints, is registered by ``_values`` on top)::

    _digest       the only xxhash importer: new_hasher, digest_bytes, is_digest, RefDigest
    _files        reading file and folder content: file_digest, tree_entries, FileHashCache
    _encoder      the canonical frame encoding (Encoder) and its handler registry: which
                  handler a type gets, the cloudpickle fallback
    _secret       Secret parameters: keyed HMAC-SHA256 digests (SecretHasher), never plain
    _arrays       handlers for numpy arrays and scalars, pandas frames, series and indexes
    _builtins     handlers for builtin and stdlib types, File/Directory, RefDigest; registers
                  them (numpy, pandas, decimal... once those are imported), and _secret's
                  by importing it; hash_plain
    _cachekey     cache_key: a node's Merkle key from its kind, code, version, params, outputs
    _usercode     what counts as user code, and how it is named (module_label, qualified_name)
    _source       what one function or class is: normalised source, or bytecode
    _settings     library settings at a module's top level (np.random.seed(1)), a part of
                  the code defined there
    _fingerprint  code_fingerprint: a node's code and the user code it refers to, transitively
    _pickled      the code a pickle names by reference (user classes and functions by
                  fingerprint, packages by version): for pickled parameters and outputs
    _values       hash_value for any value (functions and classes by fingerprint) and
                  register_value_hasher
    _describe     short human descriptions of values for the journal (never part of a key)
    _outputs      value_digest: the canonical digest of an output (frames, arrays, plain
                  values) that downstream keys use instead of its bytes' digest

``File`` and ``Directory`` themselves are defined in :mod:`etherealfabric.define._files`.
This package's ``__init__`` imports nothing: importing ``etherealfabric`` does not load the
hashing machinery until a key is computed.
"""
