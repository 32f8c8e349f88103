#!/bin/sh
# The image's entrypoint. `global`, `zone` and `ctl` are short for meshgate-global, meshgate-zone and
# meshgatectl; anything else (one of those full names, python, sh) runs as given. `exec` makes the program
# PID 1, so it receives SIGTERM from `docker stop` and Kubernetes directly and shuts down cleanly.
set -eu
case "${1:-}" in
    global) shift; set -- meshgate-global "$@" ;;
    zone) shift; set -- meshgate-zone "$@" ;;
    ctl) shift; set -- meshgatectl "$@" ;;
    "") set -- meshgate-global --help ;;
esac
exec "$@"
