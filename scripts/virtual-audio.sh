#!/usr/bin/env bash
# A real sound device on a machine with no sound card, for the playground's device tests and
# for trying voice input without hardware: a PulseAudio server with a null sink "vsink" whose
# monitor is the default input, so whatever is played is what the "mic" hears.
#
#   scripts/virtual-audio.sh start    # install what is missing (root + apt only), start the server
#   scripts/virtual-audio.sh status
#   scripts/virtual-audio.sh stop
#
# It needs the Debian packages pulseaudio and libportaudio2: as root on a Debian/Ubuntu machine
# `start` installs them; otherwise it says what to install. A sound server that already runs
# (a desktop's PulseAudio or PipeWire) is used as it is. `start` always ends with one line
# saying what is there, and exits 0 only when a device is usable.
set -uo pipefail
cmd=${1:-start}
have() { command -v "$1" >/dev/null 2>&1; }
portaudio() { ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2'; }
say() { echo "virtual-audio: $*"; }

install_packages() {
  local missing=()
  have pulseaudio || missing+=(pulseaudio)
  portaudio || missing+=(libportaudio2)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    say "needs ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]}); device tests are skipped"
    return 1
  fi
  say "installing ${missing[*]} (apt-get)"
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1; then
    say "could not install ${missing[*]} with apt-get; device tests are skipped"
    return 1
  fi
}

case "$cmd" in
  start)
    install_packages || exit 1
    if pactl info >/dev/null 2>&1; then
      say "a sound server is already running: $(pactl info | sed -n 's/^Server Name: //p')"
      exit 0
    fi
    # Running as root is the common case in containers; PulseAudio refuses it without --system,
    # which in turn needs a system bus. A per-user server with these options works as root.
    pulseaudio -D --exit-idle-time=-1 --disallow-exit -n \
      --load="module-null-sink sink_name=vsink" \
      --load="module-native-protocol-unix" --load="module-always-sink" 2>/dev/null
    for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
    if ! pactl info >/dev/null 2>&1; then
      say "PulseAudio did not start; device tests are skipped"
      exit 1
    fi
    pactl set-default-sink vsink
    pactl set-default-source vsink.monitor
    say "running (sink vsink, default input vsink.monitor)"
    ;;
  stop)
    pulseaudio --kill 2>/dev/null || true
    ;;
  status)
    if pactl info >/dev/null 2>&1; then pactl info | head -3; else say "not running"; fi
    ;;
  *)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
