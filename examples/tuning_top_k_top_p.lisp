; tuning_top_k_top_p.lisp -- the "Top-k and top-p together" snippet of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment bind what they assume
; (`generator`) and show each preset's answer to the same request ("sample" applies temperature,
; top_k and top_p together).

(use 'lispe_torch)

; [added] a generator on the embedded model, a short request, and a fixed seed
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_chat '(("user" "Give a name for a pet cat.")))))
(torch_generator_config generator {"seed":3})
(defun show (name)
    (setq out (torch_generate generator input_tokens "sample"))
    (println name generator)
    (println "    " (tokenizer_decode (tensor_slice out 0 (size input_tokens) (size out)))))

; Conservative nucleus
(torch_set_generation_params generator 50 0.8 30 0.85)
(show "conservative")

; Balanced sampling
(torch_set_generation_params generator 50 0.8 40 0.9) 
(show "balanced")

; Creative exploration
(torch_set_generation_params generator 50 1.0 50 0.95)
(show "creative")
