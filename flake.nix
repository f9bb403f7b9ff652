{
  description = "Xnode: a NixOS node appliance whose agent probes, attests and supervises the node";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    disko = {
      url = "github:nix-community/disko/v1.13.0";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  # Thin on purpose: everything lives in nix/, modules/, hardware/,
  # images/, configurations/ and tests/; this file only wires them.
  outputs =
    {
      self,
      nixpkgs,
      disko,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      hardware = import ./hardware;

      xnodePackages = pkgs: {
        xnode-agent = pkgs.callPackage ./nix/packages/xnode-agent.nix { };
        cometbft = pkgs.callPackage ./nix/packages/cometbft.nix { };
      };

      # The flake's packages as the modules' defaults (no overlay, so the
      # modules also work where pkgs is read-only, as in VM tests).
      # One keyed module, so importing several of nixosModules.* sets each
      # default once.
      flakePackages =
        {
          lib,
          options,
          pkgs,
          ...
        }:
        let
          own = self.packages.${pkgs.stdenv.hostPlatform.system};
        in
        {
          key = "xnode#flake-packages";
          config = lib.mkMerge [
            { services.xnode.agent.package = lib.mkDefault own.xnode-agent; }
            (lib.optionalAttrs (options ? services.xnode.cometbft.package) {
              services.xnode.cometbft.package = lib.mkDefault own.cometbft;
            })
          ];
        };
      withFlakePackages = module: {
        imports = [
          module
          flakePackages
        ];
      };

      configuration =
        name:
        lib.nixosSystem {
          modules = [
            self.nixosModules.default
            disko.nixosModules.disko
            ./configurations/${name}.nix
            {
              # The live installer carries this flake to install offline.
              xnode.installer = {
                flake = self;
                configuration = name;
              };
            }
          ];
        };

      # Every tests/<scenario>.nix is a VM test: found, not listed.
      isScenario = file: type: type == "regular" && lib.hasSuffix ".nix" file;
      vmTests =
        pkgs:
        lib.mapAttrs' (file: _: {
          name = "vm-" + lib.removeSuffix ".nix" file;
          value = import ./tests/${file} { inherit pkgs self; };
        }) (lib.filterAttrs isScenario (builtins.readDir ./tests));
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          own = xnodePackages pkgs;
          images = self.nixosConfigurations.xnode.config.system.build.images;
        in
        own
        // {
          default = own.xnode-agent;
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          xnode-iso = images.iso-installer;
          xnode-raw-efi = images.raw-efi;
          xnode-qcow2 = images.qemu-efi;
        }
      );

      nixosModules = {
        default = withFlakePackages ./modules;
        agent = withFlakePackages ./modules/agent.nix;
        cometbft = withFlakePackages ./modules/cometbft.nix;
        ipfs = withFlakePackages ./modules/ipfs.nix;
        mesh = withFlakePackages ./modules/mesh.nix;
        chain = withFlakePackages ./modules/chain.nix;
        firstboot = ./modules/firstboot.nix;
        images = ./images;
      }
      // lib.mapAttrs' (name: module: lib.nameValuePair "hardware-${name}" module) hardware;

      nixosConfigurations = lib.genAttrs [
        "xnode"
        "xnode-gpu"
        "xnode-vm"
      ] configuration;

      apps = forAllSystems (
        pkgs:
        let
          vm = self.nixosConfigurations.xnode-vm.config.system.build.vm;
          deploy = pkgs.writeShellApplication {
            name = "xnode-deploy";
            runtimeInputs = [ pkgs.nixos-anywhere ];
            text = ''
              # nix run .#deploy -- [--config xnode|xnode-gpu] root@HOST [nixos-anywhere flags]
              config=xnode
              if [ "''${1:-}" = --config ]; then config=$2; shift 2; fi
              if [ $# -eq 0 ]; then
                echo "usage: nix run .#deploy -- [--config xnode|xnode-gpu] root@HOST [nixos-anywhere flags]" >&2
                exit 2
              fi
              exec nixos-anywhere --flake "${self}#$config" "$@"
            '';
          };
        in
        {
          deploy = {
            type = "app";
            program = lib.getExe deploy;
          };
        }
        # xnode-vm is an x86_64 guest.
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          vm = {
            type = "app";
            program = "${vm}/bin/run-xnode-vm-vm";
          };
        }
      );

      checks = forAllSystems (
        pkgs:
        import ./nix/checks.nix {
          inherit
            pkgs
            lib
            self
            disko
            hardware
            ;
          packages = self.packages.${pkgs.stdenv.hostPlatform.system};
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") (vmTests pkgs)
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt);

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.xnode-agent ];
          packages = with pkgs; [
            cargo
            clippy
            rustfmt
            rust-analyzer
            swtpm
            tpm2-tools
            nixfmt
            nixos-anywhere
            qemu
            kubo
            self.packages.${pkgs.stdenv.hostPlatform.system}.cometbft
          ];
        };
      });
    };
}
