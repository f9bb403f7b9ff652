# Module configurations evaluated by eval-modules.nix. Each names the
# units whose rendering is compared with the golden file.
let
  agent = {
    services.xnode.agent.enable = true;
  };
  # The NVIDIA profile on a host whose nixos-facter report lists one
  # display controller of this PCI vendor.
  nvidiaProfileWithGpu = vendor: {
    imports = [ ../../hardware/nvidia.nix ];
    # Stand-in for the driver package nixpkgs would provide.
    hardware.nvidia.package = { };
    hardware.facter.report.hardware.graphics_card = [
      {
        vendor = {
          type = "pci";
          value = vendor;
        };
        base_class.value = 3;
      }
    ];
  };
  chain = {
    services.xnode.cometbft = {
      enable = true;
      chainId = "xnode-testnet-1";
      genesis = "/etc/xnode/cometbft/genesis.json";
    };
  };
in
{
  # A validator with all three services, as the appliance runs them.
  validator = {
    units = [
      "xnode-agent"
      "xnode-identity"
      "xnode-attest"
      "cometbft"
      "ipfs"
      "xnode-mesh"
      "xnode-firstboot"
    ];
    modules = [
      agent
      chain
      {
        networking.hostName = "xnode-validator-1";
        services.xnode.cometbft = {
          validator.enable = true;
          validator.generateKey = true;
          minPeers = 3;
          persistentPeers = [ "5576458aef205977e18fd50b274e9b5d9014525a@10.20.0.11:26656" ];
          settings.consensus.timeout_commit = "1s";
        };
        services.xnode.ipfs = {
          enable = true;
          storageMax = "100GB";
        };
        services.xnode.mesh.enable = true;
        services.xnode.services.cometbft.dependsOn = [ "ipfs" ];
      }
    ];
  };

  # The mesh with every typed option set: a bootstrap peer, attestation
  # checked against EK CAs and an activation registry, and this node's own
  # attestation announced (copied in by root at start and after each
  # attestation).
  mesh-attested = {
    units = [
      "xnode-mesh"
      "xnode-attest"
    ];
    modules = [
      agent
      {
        services.xnode.mesh = {
          enable = true;
          listen = "/ip4/0.0.0.0/tcp/4200";
          bootstrap = [
            "/ip4/10.20.0.11/tcp/4200/p2p/12D3KooWHfe18eQBpPzk9zx8EHGq7v4VdUtSYQsBpfraJ5wp344U"
          ];
          metricsInterval = 60;
          announceAttestation = true;
          attestation = {
            ekCaBundle = "/etc/xnode/ek-ca.pem";
            activations = "/etc/xnode/activations.json";
            maxAgeSecs = 10800;
          };
        };
      }
    ];
  };

  # Continuous proof of resource: CPU, memory and a plot outside the
  # state directory (the agent may write there, and only there).
  proof-of-resource = {
    units = [ "xnode-agent" ];
    modules = [
      agent
      {
        services.xnode.agent.proofOfResource = {
          enable = true;
          intervalSeconds = 43200;
          claim = {
            resources = [
              "cpu"
              "mem"
              "disk"
            ];
            cores = 8;
            memory = "16G";
            disk = "1T";
            plot = "/srv/xnode/plot";
          };
        };
      }
    ];
  };

  # The GPU challenge in the daemon: CUDA's libraries and devices for it.
  gpu-proof = {
    units = [ "xnode-agent" ];
    modules = [
      agent
      (nvidiaProfileWithGpu 4318) # 0x10de, NVIDIA
      {
        services.xnode.agent.proofOfResource = {
          enable = true;
          claim.resources = [
            "cpu"
            "gpu"
          ];
        };
      }
    ];
  };
  gpu-proof-without-profile = {
    units = [ ];
    modules = [
      agent
      {
        services.xnode.agent.proofOfResource = {
          enable = true;
          claim.resources = [ "gpu" ];
        };
      }
    ];
  };

  # An operator's own service beside the agent, with an http check.
  generic = {
    units = [ "node-exporter" ];
    modules = [
      agent
      {
        services.xnode.services.metrics-exporter = {
          unit = "node-exporter.service";
          health = {
            check = {
              type = "http";
              url = "http://127.0.0.1:9100/metrics";
            };
            intervalSecs = 15;
          };
          restart.unhealthyAfter = 2;
          serviceConfig.ExecStart = "/run/current-system/sw/bin/node_exporter";
        };
      }
    ];
  };

  # The chain's application beside CometBFT, and the node re-attesting to
  # the chain and seeding its assigned source into the local kubo.
  chain-node = {
    units = [
      "xnode-chain"
      "xnode-chain-attest"
      "xnode-chain-seed"
      "cometbft"
    ];
    modules = [
      agent
      chain
      {
        services.xnode.ipfs.enable = true;
        services.xnode.chain = {
          enable = true;
          node = {
            attest = "10min";
            seed = true;
            validatorKey = "4c0f7b1e2d3a49586a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
          };
        };
      }
    ];
  };

  # nixosModules.ipfs imported on its own (it brings the agent with it).
  ipfs-module-alone = {
    base = ../../modules/ipfs.nix;
    units = [ "ipfs" ];
    modules = [
      agent
      { services.xnode.ipfs.enable = true; }
    ];
  };

  # Bad input: each must fail evaluation with an assertion saying how to fix it.
  port-conflict = {
    units = [ ];
    modules = [
      agent
      chain
      {
        services.xnode.ipfs.enable = true;
        services.xnode.ipfs.gateway = "/ip4/127.0.0.1/tcp/26657";
      }
    ];
  };
  # The application alone (CometBFT elsewhere): no CometBFT entry appears.
  chain-app-alone = {
    units = [ "xnode-chain" ];
    modules = [
      agent
      { services.xnode.chain.enable = true; }
    ];
  };
  chain-proxy-mismatch = {
    units = [ ];
    modules = [
      agent
      chain
      {
        services.xnode.chain.enable = true;
        services.xnode.cometbft.proxyApp = "tcp://127.0.0.1:9999";
      }
    ];
  };
  validator-without-key = {
    units = [ ];
    modules = [
      agent
      chain
      { services.xnode.cometbft.validator.enable = true; }
    ];
  };
  validator-key-in-store = {
    units = [ ];
    modules = [
      agent
      chain
      {
        services.xnode.cometbft.validator = {
          enable = true;
          keyFile = "/nix/store/00000000000000000000000000000000-priv_validator_key.json";
        };
      }
    ];
  };
  cometbft-without-agent = {
    units = [ ];
    modules = [ chain ];
  };
  # A GPU host: the NVIDIA profile with a facter report that lists an
  # H100, and a service granted the GPUs.
  gpu-host = {
    units = [
      "xnode-agent"
      "trainer"
    ];
    modules = [
      agent
      (nvidiaProfileWithGpu 4318) # 0x10de, NVIDIA
      {
        services.xnode.services.trainer = {
          gpu = true;
          serviceConfig.ExecStart = "/run/current-system/sw/bin/trainer";
        };
      }
    ];
  };

  # The NVIDIA profile on a host whose nixos-facter report has no NVIDIA
  # GPU (an Intel iGPU only).
  nvidia-profile-without-nvidia-gpu = {
    units = [ ];
    modules = [
      agent
      (nvidiaProfileWithGpu 32902) # 0x8086, Intel
    ];
  };
  gpu-service-without-profile = {
    units = [ ];
    modules = [
      agent
      {
        services.xnode.services.trainer = {
          gpu = true;
          serviceConfig.ExecStart = "/run/current-system/sw/bin/true";
        };
      }
    ];
  };
}
