# Sourced by the scripts that start MPI jobs: Open MPI refuses to run as
# root unless told, and containers often lack the kernel's cross-memory
# attach, which Open MPI's shared-memory transport tries first.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
# no "help" aggregation noise, no warnings about missing high-speed networks
export OMPI_MCA_btl_base_warn_component_unused=0
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
