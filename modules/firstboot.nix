# `services.xnode.firstboot`: first-boot configuration. Once per node,
# before the agent starts, `xnode-firstboot.service` looks for `xnode.json`
# (schema `xnode.firstboot/v1`), in this order:
#
#   1. on a filesystem labelled XNODE (a USB stick; mounted read-only),
#   2. on the boot medium: /boot/xnode.json (ESP), /iso/xnode.json (live ISO),
#   3. in the cloud user data (EC2/OpenStack metadata service), if enabled.
#
# The first one found is handed to `xnode-agent firstboot install`, the
# one validator of the format (schema, Ed25519 owner keys, role, peer
# addresses; every problem named with its field): valid, it writes
# <stateDir>/authorized_keys (read by `xnode-agent run
# --api-authorized-keys`) and then <stateDir>/firstboot.json (read by
# `xnode-agent service init`), both atomically and 0644, and this unit
# never runs again; invalid, it writes nothing, and the unit fails with
# the problems in its journal. None found: the node starts without owner
# keys and looks again on the next boot.
#
#   {
#     "schema": "xnode.firstboot/v1",
#     "owner_keys": ["<64 hex digits: an Ed25519 public key>"],
#     "role": "validator" | "full" | "storage",
#     "bootstrap": {
#       "cometbft": ["NODEID@host:26656"],
#       "ipfs": ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."],
#       "mesh": ["/ip4/203.0.113.7/tcp/4100/p2p/12D3KooW..."]
#     }
#   }
#
# The file holds public keys and addresses only; nothing in it is secret.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.xnode.firstboot;

  firstboot = pkgs.writeShellApplication {
    name = "xnode-firstboot";
    runtimeInputs = [
      cfg.agentPackage
      pkgs.coreutils
      pkgs.curl
      pkgs.jq
      pkgs.util-linux
      config.systemd.package
    ];
    text = ''
      # Settings, from the NixOS options.
      state_dir=${lib.escapeShellArg cfg.stateDir}
      label=${lib.escapeShellArg cfg.searchLabel}
      user_data=${lib.boolToString cfg.userData}
      user_data_url=${lib.escapeShellArg cfg.userDataUrl}
      token_url=${lib.escapeShellArg (toString cfg.userDataTokenUrl)}
      medium_files=(${lib.escapeShellArgs cfg.searchPaths})
      max_bytes=65536

      # Under systemd, stderr goes to the journal: prefix the syslog level.
      if [ -n "''${JOURNAL_STREAM:-}" ]; then
        p_err="<3>"
        p_info="<6>"
      else
        p_err=""
        p_info=""
      fi
      info() { echo "''${p_info}xnode-firstboot: $*" >&2; }
      fail() { echo "''${p_err}xnode-firstboot: $*" >&2; }

      usage() {
        cat >&2 <<USAGE
      usage: xnode-firstboot [--state-dir DIR]            find xnode.json and install it
             xnode-firstboot [--state-dir DIR] --from FILE install FILE
             xnode-firstboot --check FILE                  check FILE only

      Looks for xnode.json (schema xnode.firstboot/v1), in this order: on a
      filesystem labelled $label, at ''${medium_files[*]}, and (when enabled) in
      the cloud user data at $user_data_url. The first one found is checked and
      installed by 'xnode-agent firstboot install' (DIR/firstboot.json and
      DIR/authorized_keys); nothing is written when it is invalid.
      USAGE
      }

      work=$(mktemp -d)
      mounted=""
      cleanup() {
        if [ -n "$mounted" ]; then umount "$mounted" || true; fi
        rm -rf "$work"
      }
      trap cleanup EXIT

      # apply FILE: the agent checks it (every problem, with its field) and
      # installs it atomically: authorized_keys, then firstboot.json, which
      # marks the node as configured. Nothing is written if it is invalid.
      apply() {
        local src=$1 size
        size=$(stat -c %s -- "$src")
        if [ "$size" -gt "$max_bytes" ]; then
          fail "$src: $size bytes; a first-boot file is at most $max_bytes"
          return 1
        fi
        if [ ! -d "$state_dir" ]; then
          install -d -m 0711 -- "$state_dir"
        fi
        if ! xnode-agent firstboot install "$src" --state-dir "$state_dir"; then
          fail "$src: not installed (problems above)"
          return 1
        fi
      }

      # Copies xnode.json from the filesystem labelled $label to $work/label.json.
      from_label() {
        local dev=/dev/disk/by-label/$label
        udevadm settle --timeout=10 || true
        [ -e "$dev" ] || return 1
        mkdir -p "$work/mnt"
        if ! mount -o ro,nosuid,nodev,noexec -- "$dev" "$work/mnt"; then
          fail "found $dev but could not mount it read-only"
          return 1
        fi
        mounted=$work/mnt
        if [ ! -f "$work/mnt/xnode.json" ]; then
          info "$dev (label $label) has no xnode.json"
          umount "$work/mnt"
          mounted=""
          return 1
        fi
        cp -- "$work/mnt/xnode.json" "$work/label.json"
        umount "$work/mnt"
        mounted=""
        info "found xnode.json on $dev (label $label)"
      }

      # Fetches the cloud user data (EC2 IMDSv2 token first, then plain GET as
      # OpenStack and IMDSv1 serve it) to $work/user-data.json; returns 1 when
      # there is none or it is not an xnode.firstboot document.
      from_user_data() {
        local token="" code
        local -a auth=()
        if [ -n "$token_url" ]; then
          token=$(curl -fsS --connect-timeout 2 --max-time 5 -X PUT \
            -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$token_url" 2>/dev/null) || token=""
        fi
        if [ -n "$token" ]; then
          auth=(-H "X-aws-ec2-metadata-token: $token")
        fi
        if ! code=$(curl -sS --connect-timeout 2 --max-time 10 --retry 2 --max-filesize "$max_bytes" \
          "''${auth[@]}" -o "$work/user-data.json" -w '%{http_code}' -- "$user_data_url"); then
          info "no cloud metadata service at $user_data_url"
          return 1
        fi
        case $code in
          200) ;;
          404)
            info "the cloud user data is empty"
            return 1
            ;;
          *)
            info "the cloud metadata service answered HTTP $code for $user_data_url"
            return 1
            ;;
        esac
        # Other tools' user data (cloud-init scripts, YAML) is not ours: skip it.
        if ! jq -e 'type == "object" and has("schema")' "$work/user-data.json" >/dev/null 2>&1; then
          info "the cloud user data is not an xnode.firstboot document; ignored"
          return 1
        fi
        info "found xnode.json in the cloud user data ($user_data_url)"
      }

      # The first xnode.json found is the operator's intent: when it is
      # invalid, fail (nothing written) rather than fall back to the next one.
      find_and_apply() {
        local f found=""
        if from_label; then
          found=$work/label.json
        else
          for f in "''${medium_files[@]}"; do
            if [ -f "$f" ]; then
              info "found $f"
              found=$f
              break
            fi
          done
        fi
        if [ -z "$found" ] && [ "$user_data" = true ] && from_user_data; then
          found=$work/user-data.json
        fi
        if [ -n "$found" ]; then
          if ! apply "$found"; then
            fail "fix xnode.json and reboot (or: systemctl restart xnode-firstboot); nothing was written"
            return 1
          fi
          return 0
        fi
        info "no xnode.json found (label $label, ''${medium_files[*]}$([ "$user_data" = true ] && echo ", cloud user data")); the node starts without owner keys"
      }

      mode="find"
      file=""
      while [ $# -gt 0 ]; do
        case $1 in
          --state-dir)
            state_dir=''${2:?--state-dir needs a directory}
            shift 2
            ;;
          --from)
            mode=from
            file=''${2:?--from needs a file}
            shift 2
            ;;
          --check)
            mode=check
            file=''${2:?--check needs a file}
            shift 2
            ;;
          -h | --help)
            usage
            exit 0
            ;;
          *)
            usage
            exit 2
            ;;
        esac
      done

      case $mode in
        find) find_and_apply ;;
        from) apply "$file" ;;
        check) exec xnode-agent firstboot check "$file" ;;
      esac
    '';
  };
in
{
  options.services.xnode.firstboot = {
    enable = mkOption {
      type = types.bool;
      default = config.services.xnode.agent.enable or false;
      defaultText = lib.literalExpression "config.services.xnode.agent.enable";
      description = "Install a first-boot file (xnode.json, `xnode.firstboot/v1`) once, before the agent starts.";
    };
    searchLabel = mkOption {
      type = types.strMatching "[^/[:space:]]+";
      default = "XNODE";
      description = "Filesystem label of the medium (e.g. a FAT USB stick) whose top-level xnode.json is read.";
    };
    searchPaths = mkOption {
      type = types.listOf types.str;
      default = [
        "/boot/xnode.json"
        "/iso/xnode.json"
      ];
      description = "Files on the boot medium to read, in order, when no medium with the label has one (the ESP, the live ISO).";
    };
    userData = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Also read the cloud user data from the metadata service
        (`userDataUrl`, EC2 and OpenStack compatible; short timeouts). User
        data that is not an `xnode.firstboot` document (cloud-init) is ignored.
      '';
    };
    userDataUrl = mkOption {
      type = types.str;
      default = "http://169.254.169.254/latest/user-data";
      description = "Where the cloud user data is fetched from.";
    };
    userDataTokenUrl = mkOption {
      type = types.nullOr types.str;
      default = "http://169.254.169.254/latest/api/token";
      description = ''
        EC2 IMDSv2 session-token endpoint, asked first (PUT); without a
        token the user data is fetched plainly (IMDSv1, OpenStack). null skips it.
      '';
    };
    stateDir = mkOption {
      type = types.strMatching "/var/lib/[^/].*";
      default = config.services.xnode.agent.stateDir or "/var/lib/xnode";
      defaultText = lib.literalExpression "config.services.xnode.agent.stateDir";
      description = "Where firstboot.json and authorized_keys are written.";
    };
    agentPackage = mkOption {
      type = types.package;
      default =
        config.services.xnode.agent.package or (throw ''
          services.xnode.firstboot installs xnode.json with `xnode-agent firstboot install`:
          import the agent module (nixosModules.default), or set services.xnode.firstboot.agentPackage.
        '');
      defaultText = lib.literalExpression "config.services.xnode.agent.package";
      description = "The xnode-agent whose `firstboot install` checks and installs the file.";
    };
    package = mkOption {
      type = types.package;
      default = firstboot;
      readOnly = true;
      description = ''
        The `xnode-firstboot` command: with no arguments it does what the unit
        does; `--check FILE` checks a file; `--from FILE --state-dir DIR`
        installs one (the live installer uses it for the installed system).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    systemd.services.xnode-firstboot = {
      description = "Xnode first-boot configuration (xnode.json)";
      wantedBy = [ "multi-user.target" ];
      before = [
        "xnode-agent.service"
        "xnode-identity.service"
      ];
      wants = lib.optional cfg.userData "network-online.target";
      after = [ "local-fs.target" ] ++ lib.optional cfg.userData "network-online.target";
      unitConfig.ConditionPathExists = "!${cfg.stateDir}/firstboot.json";
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = lib.getExe cfg.package;
        # The agent's state directory (same mode as the agent's units give it).
        StateDirectory = lib.removePrefix "/var/lib/" cfg.stateDir;
        StateDirectoryMode = "0711";
        UMask = "0077";

        # Root for mount(8) on the labelled medium, confined otherwise.
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateNetwork = !cfg.userData;
        RestrictAddressFamilies = [
          "AF_UNIX"
        ]
        ++ lib.optionals cfg.userData [
          "AF_INET"
          "AF_INET6"
        ];
        NoNewPrivileges = true;
        # mount(2) of the labelled medium; everything it writes is root's own.
        CapabilityBoundingSet = [ "CAP_SYS_ADMIN" ];
        ProtectKernelTunables = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "@mount"
        ];
      };
    };
  };
}
