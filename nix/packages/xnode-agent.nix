# The agent: the whole Rust workspace, built from Cargo.lock (no vendor
# hash) and tested in the build. Tests that need root, network namespaces,
# a VM or Nix itself say SKIPPED in the sandbox; the swtpm ones run.
{
  lib,
  rustPlatform,
  pkg-config,
  tpm2-tss,
  swtpm,
  tpm2-tools,
  openssl,
}:
let
  root = ../..;
  workspace = lib.importTOML (root + "/Cargo.toml");
in
rustPlatform.buildRustPackage {
  pname = "xnode-agent";
  inherit (workspace.workspace.package) version;

  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/Cargo.toml")
      (root + "/Cargo.lock")
      (root + "/clippy.toml")
      (root + "/agent")
      # Test inputs: golden files, fixtures, the renderer they check, and
      # the docs whose examples and schema the tests read.
      (root + "/tests")
      (root + "/modules")
      (root + "/docs")
    ];
  };

  # core2 0.4.0 is yanked on crates.io but still downloadable by checksum;
  # see docs/dependencies.md.
  cargoLock.lockFile = root + "/Cargo.lock";

  nativeBuildInputs = [ pkg-config ];
  buildInputs = [ tpm2-tss ];

  # The agent, and the chain's ABCI application (bin/xnode-chain).
  cargoBuildFlags = [
    "--package"
    "xnode-agent"
    "--package"
    "xnode-chain"
  ];
  cargoTestFlags = [ "--workspace" ];
  nativeCheckInputs = [
    swtpm
    tpm2-tools
    openssl
  ];
  # One test binary at a time: several start their own swtpm.
  dontUseCargoParallelTests = true;

  meta = {
    description = "The Xnode node agent: probe, attest and supervise a node";
    license = lib.licenses.asl20;
    mainProgram = "xnode-agent";
    platforms = lib.platforms.linux;
  };
}
