#!/bin/sh
# dlsort image entrypoint: pull the models the catalog marks for images from GIN into the cache
# (or say in one line why the embedded ones are used), then run the command. Never stops the
# container from starting. DLSORT_PULL_AT_START=0 skips the pull; DLSORT_EXTRA_MODELS adds models.
python -m dlsort.models.startup
exec "$@"
