# CometBFT v0.38 (ABCI 2.0): nixpkgs has no cometbft package, so it is
# built here at a pinned release. Where each hash comes from: docs/flake.md.
{
  lib,
  buildGoModule,
  fetchFromGitHub,
}:
buildGoModule rec {
  pname = "cometbft";
  version = "0.38.21";

  src = fetchFromGitHub {
    owner = "cometbft";
    repo = "cometbft";
    rev = "v${version}";
    hash = "sha256-ehfFxnUBRCXFrlkpvB0UMmnNPjYEY1T1sTHbjUB+70g=";
  };
  vendorHash = "sha256-BFm+AimN+fdUPz3+MNIvJyqp8dsn5JjNaipnYsHZiC8=";

  subPackages = [ "cmd/cometbft" ];
  ldflags = [
    "-s"
    "-w"
    # version.TMCoreSemVer is a constant; the commit is the one variable.
    "-X github.com/cometbft/cometbft/version.TMGitCommitHash=c56d64ec"
  ];
  # Upstream's test suite needs network and takes most of an hour.
  doCheck = false;

  meta = {
    description = "CometBFT: BFT state-machine replication (the Xnode chain's consensus)";
    homepage = "https://github.com/cometbft/cometbft";
    license = lib.licenses.asl20;
    mainProgram = "cometbft";
  };
}
