#!/usr/bin/env bash
# Debian packages the tests drive as real clients and servers: GDAL's command-line tools
# (OAPIF and MVT drivers, ogr2ogr), Node.js for the glTF and 3D Tiles checks, the Mosquitto
# MQTT broker that the sensor tests start (never as a service), Chromium for the web
# view's browser tests, and a Chinese font for maps and screenshots.
# Installs only what is missing; needs root (or sudo).
set -euo pipefail

need=()
command -v ogrinfo >/dev/null 2>&1 || need+=(gdal-bin)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# the web view's browser tests drive Debian's Chromium (Playwright's own download is not used)
[ -x /usr/bin/chromium ] || need+=(chromium)
# a font with Chinese glyphs, for district and building names in maps, reports and screenshots
fc-list 2>/dev/null | grep -ci "wenquanyi\|noto sans cjk" >/dev/null || need+=(fonts-wqy-zenhei)
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root to install: ${need[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
