#!/usr/bin/env bash
# Build the one-folder desktop bundle in dist/segstudio and smoke-test it.
#
#   packaging/build.sh              # CPU torch (smaller bundle, runs anywhere)
#   SEGSTUDIO_TORCH=cuda packaging/build.sh   # the CUDA torch from PyPI (about 5 GB more)
#   PREFIX=~/.local packaging/build.sh --install   # also install the launcher, .desktop entry and icons
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=build/pkg-venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip
case "${SEGSTUDIO_TORCH:-cpu}" in
    cpu)  "$venv/bin/pip" install torch torchvision --index-url https://download.pytorch.org/whl/cpu ;;
    cuda) "$venv/bin/pip" install torch torchvision ;;
    *)    echo "SEGSTUDIO_TORCH must be cpu or cuda" >&2; exit 2 ;;
esac
"$venv/bin/pip" install ".[test]" pyinstaller
"$venv/bin/python" scripts/render_icons.py
"$venv/bin/pyinstaller" --noconfirm --distpath dist --workpath build/pyinstaller packaging/segstudio.spec

# the packaged app starts offscreen, opens the sample and quits with status 0
SEGSTUDIO_APP="$root/dist/segstudio/segstudio" QT_QPA_PLATFORM=offscreen \
    "$venv/bin/python" -m pytest -m packaging tests/packaging -q

if [ "${1:-}" = "--install" ]; then
    prefix=${PREFIX:-$HOME/.local}
    mkdir -p "$prefix/opt" "$prefix/bin" "$prefix/share/applications"
    rm -rf "$prefix/opt/segstudio" && cp -r dist/segstudio "$prefix/opt/segstudio"
    ln -sf "$prefix/opt/segstudio/segstudio" "$prefix/bin/segstudio"
    install -m 644 packaging/segstudio.desktop "$prefix/share/applications/segstudio.desktop"
    for png in resources/icons/segstudio-*.png; do
        size=$(basename "$png" .png); size=${size#segstudio-}
        install -D -m 644 "$png" "$prefix/share/icons/hicolor/${size}x${size}/apps/segstudio.png"
    done
    install -D -m 644 resources/icons/segstudio.svg "$prefix/share/icons/hicolor/scalable/apps/segstudio.svg"
    echo "installed into $prefix"
fi
echo "built dist/segstudio"
