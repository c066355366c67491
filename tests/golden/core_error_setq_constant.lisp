(setq nil 3)
