#!/usr/bin/env bash
# System packages the test suite uses when it can: Debian's Chromium (the report is checked in a real
# headless browser), bubblewrap (the code sandbox's namespace isolation) and libseccomp (its syscall
# filter, through pyseccomp; Debian ships it with apt, so it is rarely missing). Installed only where
# apt-get runs as root (CI, fresh containers); elsewhere the tests that need them say why they skip.
set -u
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v bwrap >/dev/null || need+=(bubblewrap)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2 ' || need+=(libseccomp2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: ${need[*]} not installed (needs apt-get as root); the tests that use them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; } \
    || echo "note: could not install ${need[*]}; the tests that use them will skip" >&2
exit 0
