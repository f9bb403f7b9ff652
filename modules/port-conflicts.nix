# One assertion for every port two Xnode listeners would both take.
{
  config,
  lib,
  ...
}:
let
  x = config.services.xnode;
  # Each part module may be imported alone (nixosModules.agent, …).
  on = part: x.${part}.enable or false;
  ports = import ./lib/ports.nix;
  use = option: address: { inherit option address; };
  uses =
    lib.optionals (on "cometbft") (
      [
        (use "services.xnode.cometbft.rpcAddress" x.cometbft.rpcAddress)
        (use "services.xnode.cometbft.p2pAddress" x.cometbft.p2pAddress)
        (use "services.xnode.cometbft.proxyApp" x.cometbft.proxyApp)
      ]
      ++ lib.optional (x.cometbft.validator.remoteSigner != null) (
        use "services.xnode.cometbft.validator.remoteSigner" x.cometbft.validator.remoteSigner
      )
    )
    ++ lib.optionals (on "ipfs") (
      [
        (use "services.xnode.ipfs.api" x.ipfs.api)
        (use "services.xnode.ipfs.gateway" x.ipfs.gateway)
      ]
      ++ lib.imap0 (i: a: use "services.xnode.ipfs.swarm[${toString i}]" a) x.ipfs.swarm
    )
    ++ lib.optionals (on "mesh") [
      (use "services.xnode.mesh.listen" x.mesh.listen)
      # QUIC takes the same port number on UDP.
      (use "services.xnode.mesh.listen (QUIC)" (
        builtins.replaceStrings [ "/tcp/" ] [ "/udp/" ] x.mesh.listen
      ))
    ]
    ++ lib.optional (on "agent" && x.agent.api.tcp != null) (
      use "services.xnode.agent.api.tcp" x.agent.api.tcp
    );
in
{
  config.assertions = map (message: {
    assertion = false;
    inherit message;
  }) (ports.conflicts uses);
}
