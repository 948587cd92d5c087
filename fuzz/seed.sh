#!/usr/bin/env bash
# Regenerate fuzz/corpus/<target>/ from vectors/ (see seed.py).
exec python3 "$(dirname "$0")/seed.py" "$@"
