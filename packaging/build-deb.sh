#!/usr/bin/env bash
# Builds the Debian package: target/debian/rackboot_<version>-1_amd64.deb.
#
#   bash packaging/build-deb.sh
#
# Needs cargo-deb (cargo install cargo-deb --locked --version 3.8.0). Builds
# the release binary and the static deploy agent, writes the man pages and
# the shell completions from the binary into target/package/, then packs
# everything [package.metadata.deb] in Cargo.toml lists. The release profile
# has no debug info; cargo-deb strips the symbols too. Prints the package's
# path.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "packaging/build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked --version 3.8.0" >&2
  exit 1
fi
cargo build --release --locked --bin rackboot
cargo rustc --release --locked -p rackboot-agent --bin rackboot-agent -- -C target-feature=+crt-static
out=target/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
target/release/rackboot manpages "$out/man" >/dev/null
gzip -9n "$out"/man/*.1
target/release/rackboot completions bash > "$out/completions/rackboot.bash"
target/release/rackboot completions zsh > "$out/completions/_rackboot"
target/release/rackboot completions fish > "$out/completions/rackboot.fish"
cargo deb --no-build --locked --quiet --strip
ls -1t target/debian/rackboot_*.deb | head -1
