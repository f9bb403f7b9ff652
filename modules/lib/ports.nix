# Which protocol and port each listen address takes, and which addresses
# collide. Builtins only (evaluated in CI by a bare nix-instantiate).
# Understands CometBFT laddrs (tcp://HOST:PORT, unix://…), libp2p
# multiaddrs (/ip4/A/tcp/P, /ip6/A/udp/P/quic-v1, …) and plain HOST:PORT.
let
  toInt = s: builtins.fromJSON s;

  parse =
    address:
    let
      laddr = builtins.match "tcp://(.*):([0-9]+)" address;
      multi = builtins.match "/(ip4|ip6|dns|dns4|dns6)/[^/]+/(tcp|udp)/([0-9]+)(/.*)?" address;
      hostPort = builtins.match "([^/]*):([0-9]+)" address;
    in
    if laddr != null then
      {
        proto = "tcp";
        port = toInt (builtins.elemAt laddr 1);
      }
    else if multi != null then
      {
        proto = builtins.elemAt multi 1;
        port = toInt (builtins.elemAt multi 2);
      }
    else if hostPort != null then
      {
        proto = "tcp";
        port = toInt (builtins.elemAt hostPort 1);
      }
    else
      null; # unix sockets, built-in ABCI apps: no port
in
{
  inherit parse;

  # uses: [ { option = "services.xnode.ipfs.api"; address = "/ip4/…"; } … ]
  # → one message per port claimed more than once (port 0 means "any
  # free port" and never collides).
  conflicts =
    uses:
    let
      parsed = builtins.filter (u: u.at != null && u.at.port != 0) (
        map (u: u // { at = parse u.address; }) uses
      );
      key = u: "${u.at.proto}/${toString u.at.port}";
      addKey = acc: u: if builtins.elem (key u) acc then acc else acc ++ [ (key u) ];
      keys = builtins.foldl' addKey [ ] parsed;
      claims = k: builtins.filter (u: key u == k) parsed;
      describe = u: "${u.option} = \"${u.address}\"";
    in
    builtins.concatMap (
      k:
      let
        c = claims k;
      in
      if builtins.length c < 2 then
        [ ]
      else
        [
          "port ${k} is claimed by ${builtins.concatStringsSep " and by " (map describe c)}: give each a port of its own"
        ]
    ) keys;
}
