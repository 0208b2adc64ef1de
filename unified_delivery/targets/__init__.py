"""Deploy targets: one interface, one implementation per kind and place."""
