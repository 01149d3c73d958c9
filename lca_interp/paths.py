"""Is a string a path or a name? One answer for model names, dataset ids and files alike.

A hub id is "name" or "owner/name"; a path starts with "/", "." or "~", has more than one "/",
or ends in a file suffix. A string that looks like a path but does not exist is an error, never
a hub lookup (which would wait on the network and then fail with a less useful message).
"""

import os

FILE_SUFFIXES = (".json", ".jsonl", ".safetensors", ".bin", ".gguf")


def looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or name.endswith(FILE_SUFFIXES)
        or (os.sep != "/" and os.sep in name)
    )
