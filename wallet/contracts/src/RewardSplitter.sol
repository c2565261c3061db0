// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {IAdapterRegistry} from "./IAdapterRegistry.sol";

/// @title ModelFactory reward splitter
/// @notice Anyone pays ether into a registered adapter; the payment is split at once among the
/// adapter's contributors by their shares in basis points, and each contributor withdraws what
/// they are owed whenever they like (pull payments: paying never sends ether to anyone).
///
/// Exact accounting: contributor i is credited floor(amount * shares[i] / 10 000), and the
/// remainder of those divisions (fewer wei than there are contributors) goes to the contributor
/// with the largest share, the first in the registration's (ascending address) order on a tie.
/// So every payment is credited in full, to the wei, and at all times
///     sum of owed + totalWithdrawn == totalPaid.
contract RewardSplitter is ReentrancyGuard {
    uint256 public constant TOTAL_SHARES = 10_000;

    /// @notice The registry whose registrations and shares this splitter pays by.
    IAdapterRegistry public immutable registry;

    /// @notice Credited to an account and not yet withdrawn.
    mapping(address account => uint256) public owed;
    /// @notice Paid into an adapter so far.
    mapping(bytes32 manifestHash => uint256) public paidInto;
    /// @notice Paid into all adapters so far.
    uint256 public totalPaid;
    /// @notice Withdrawn by all accounts so far.
    uint256 public totalWithdrawn;

    /// @notice `payer` paid `amount` wei into the adapter `manifestHash`.
    event Paid(bytes32 indexed manifestHash, address indexed payer, uint256 amount);
    /// @notice Of a payment into `manifestHash`, `amount` wei were credited to `contributor`.
    event Credited(bytes32 indexed manifestHash, address indexed contributor, uint256 amount);
    /// @notice `account` withdrew `amount` wei, sent to `to`.
    event Withdrawn(address indexed account, address indexed to, uint256 amount);

    error ZeroRegistry();
    error ZeroPayment();
    error UnknownAdapter(bytes32 manifestHash);
    error NothingOwed(address account);
    error ZeroRecipient();
    error TransferFailed(address to, uint256 amount);

    constructor(IAdapterRegistry registry_) {
        if (address(registry_) == address(0)) revert ZeroRegistry();
        registry = registry_;
    }

    /// @notice Pays `msg.value` wei into the adapter `manifestHash`, split among its contributors.
    function pay(bytes32 manifestHash) external payable nonReentrant {
        if (msg.value == 0) revert ZeroPayment();
        if (!registry.isRegistered(manifestHash)) revert UnknownAdapter(manifestHash);
        (address[] memory contributors, uint16[] memory shares) = registry.sharesOf(manifestHash);
        uint256[] memory amounts = _split(msg.value, shares);

        paidInto[manifestHash] += msg.value;
        totalPaid += msg.value;
        emit Paid(manifestHash, msg.sender, msg.value);
        for (uint256 i; i < contributors.length; ++i) {
            if (amounts[i] == 0) continue;
            owed[contributors[i]] += amounts[i];
            emit Credited(manifestHash, contributors[i], amounts[i]);
        }
    }

    /// @notice What a payment of `amount` wei into `manifestHash` would credit to each contributor.
    function preview(bytes32 manifestHash, uint256 amount)
        external
        view
        returns (address[] memory contributors, uint256[] memory amounts)
    {
        if (!registry.isRegistered(manifestHash)) revert UnknownAdapter(manifestHash);
        uint16[] memory shares;
        (contributors, shares) = registry.sharesOf(manifestHash);
        amounts = _split(amount, shares);
    }

    /// @notice Sends the caller everything they are owed.
    function withdraw() external nonReentrant returns (uint256) {
        return _withdraw(msg.sender, payable(msg.sender));
    }

    /// @notice Sends everything the caller is owed to `to` (for a contributor contract that
    /// cannot receive ether itself).
    function withdrawTo(address payable to) external nonReentrant returns (uint256) {
        if (to == address(0)) revert ZeroRecipient();
        return _withdraw(msg.sender, to);
    }

    /// @dev Checks, effects, then the one interaction.
    function _withdraw(address account, address payable to) private returns (uint256 amount) {
        amount = owed[account];
        if (amount == 0) revert NothingOwed(account);
        owed[account] = 0;
        totalWithdrawn += amount;
        emit Withdrawn(account, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }

    /// @dev floor(amount * share / 10 000) each; the remainder to the largest share (first on a
    /// tie). The result sums to `amount` exactly. Shares come from the registry, which checked
    /// that they are nonzero and sum to 10 000.
    function _split(uint256 amount, uint16[] memory shares) private pure returns (uint256[] memory amounts) {
        uint256 n = shares.length;
        amounts = new uint256[](n);
        uint256 credited;
        uint256 largest;
        for (uint256 i; i < n; ++i) {
            uint256 a = amount * shares[i] / TOTAL_SHARES;
            amounts[i] = a;
            credited += a;
            if (shares[i] > shares[largest]) largest = i;
        }
        amounts[largest] += amount - credited;
    }
}
