// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// Test-only malicious ERC-20: once armed, every transfer calls `target` with `data` (for
/// example a second claimWithdrawal on the settlement contract) and bubbles up its revert.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public data;
    bool private _inAttack;

    constructor() ERC20("Reentrant Token", "EVIL") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata data_) external {
        target = target_;
        data = data_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (target == address(0) || _inAttack) return;
        _inAttack = true;
        (bool ok, bytes memory ret) = target.call(data);
        _inAttack = false;
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}
