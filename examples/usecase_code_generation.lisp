; usecase_code_generation.lisp -- the "Code generation" config of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment apply the config and ask for
; a small function. The guide's 150 tokens hold; the demo caps this call at 80 new tokens so it
; finishes in seconds on a CPU.

(use 'lispe_torch)

; [added] the generator the config is for
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))

(setq config (
    ("max_length" 150)
    ("temperature" 0.3)
    ("top_p" 0.85)
    ("strategy" "top_p")
    ("repetition_penalty" 1.2)
))

; [added]
(torch_generator_config generator config)
(setq prompt (tokenizer_chat '(("user" "Write a Python function that returns the square of a number."))))
(println (torch_generate_text generator prompt {"max_length":80 "seed":0}))
