# The GPU server: the generic server plus NVIDIA datacenter drivers, NVML
# for the agent's probe, and GPUs that services can be granted.
{
  imports = [
    ./xnode.nix
    ../hardware/nvidia.nix
  ];

  networking.hostName = "xnode-gpu";
}
