; configuration lists exactly as the text generation guide writes them
(setq config (
    ("max_length" 50)           ; Maximum generation length
    ("temperature" 0.8)         ; Sampling temperature (0.1-2.0)
    ("top_k" 40)               ; Top-K sampling parameter
    ("top_p" 0.9)              ; Top-P (nucleus) sampling parameter
    ("strategy" "greedy")       ; Generation strategy
    ("repetition_penalty" 1.1)  ; Repetition penalty (>1.0)
    ("eos_token_id" 50256)     ; End-of-sequence token ID
    ("pad_token_id" 50257)     ; Padding token ID
    ("do_sample" true)         ; Enable sampling vs deterministic
))
(println (size config))
(loop pair config (println (car pair) "=" (cadr pair)))
(setq config (("repetition_penalty" 1.3)))
(println config)
(setq config (
    ("repetition_penalty" 1.0)   ; No penalty
    ("repetition_penalty" 1.1)   ; Light penalty (recommended)
    ("repetition_penalty" 1.3)   ; Strong penalty (risk of incoherence)
))
(println config)
