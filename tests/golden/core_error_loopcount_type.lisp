(loopcount "ten" (println 'x))
