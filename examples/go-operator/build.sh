#!/bin/sh
# Builds the word-lengths operator: examples/go-operator/build.sh [OUT] (default ./word-lengths).
# Then: topo deploy --cmd "$(pwd)/word-lengths" --name word-lengths
set -eu
cd "$(dirname "$0")"
go build -o "${1:-word-lengths}" .
