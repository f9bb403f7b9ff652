# Every Xnode service module; `nixosModules.default` is this plus the
# overlay that provides pkgs.xnode-agent and pkgs.cometbft.
{
  imports = [
    ./services.nix
    ./agent.nix
    ./cometbft.nix
    ./ipfs.nix
    ./mesh.nix
    ./chain.nix
    ./port-conflicts.nix
    ./firstboot.nix
  ];
}
