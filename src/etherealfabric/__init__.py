"""EtherealFabric."""
