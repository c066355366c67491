(setq value 42)
(value 1)
