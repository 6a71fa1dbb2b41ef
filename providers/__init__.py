"""Card processors behind one interface (`providers.base`), one file each, listed in
`providers.registry`. Providers translate; they never touch the database."""
