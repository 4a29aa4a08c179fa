#!/usr/bin/env bash
# Debian packages the tests drive as real clients and servers: GDAL's command-line tools
# (OAPIF and MVT drivers, ogr2ogr), Node.js for the glTF and 3D Tiles checks, the Mosquitto
# MQTT broker that the sensor tests start (never as a service), PostgreSQL with PostGIS for the
# PostGIS store, Chromium for the web view's browser tests, and a Chinese font for maps and screenshots.
# Installs only what is missing; needs root (or sudo).
set -euo pipefail

need=()
command -v ogrinfo >/dev/null 2>&1 || need+=(gdal-bin)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# the web view's browser tests drive Debian's Chromium (Playwright's own download is not used)
[ -x /usr/bin/chromium ] || need+=(chromium)
# PostgreSQL with PostGIS: the tests and benchmarks start throwaway clusters of their own
# (never the Debian service); the PostGIS package must match the installed server's major
postgis_for=""   # the PostgreSQL major whose PostGIS is missing ("new": the candidate from apt)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need+=(postgresql); postgis_for=new
else
    major=$(ls -d /usr/lib/postgresql/*/bin/initdb | sed 's#/usr/lib/postgresql/\([0-9]*\)/.*#\1#' | sort -n | tail -1)
    [ -f "/usr/share/postgresql/$major/extension/postgis.control" ] || postgis_for=$major
fi
# a font with Chinese glyphs, for district and building names in maps, reports and screenshots
fc-list 2>/dev/null | grep -ci "wenquanyi\|noto sans cjk" >/dev/null || need+=(fonts-wqy-zenhei)
[ ${#need[@]} -eq 0 ] && [ -z "$postgis_for" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root to install: ${need[*]}" >&2; exit 1; }
    SUDO=sudo
fi
$SUDO apt-get update -qq
if [ "$postgis_for" = new ]; then
    postgis_for=$(apt-cache show postgresql | sed -n 's/^Depends: postgresql-\([0-9][0-9]*\).*/\1/p' | head -1)
fi
[ -n "$postgis_for" ] && need+=("postgresql-$postgis_for-postgis-3")
echo "installing Debian packages: ${need[*]}"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
