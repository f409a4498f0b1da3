"""The fleet seen from the city: indicators computed from many gateways' inventories and health."""
